"""`smshub mail parse` (the intake dry run) says what a real intake would do."""

from __future__ import annotations

from email.message import EmailMessage
from email.utils import make_msgid

from sqlalchemy import Engine

from hub.core.config import Config
from hub.mail.intake.policy import IntakePolicy

PNG = (
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00"
    b"\x1f\x15\xc4\x89\x00\x00\x00\rIDATx\x9cc\xf8\xff\xff?\x00\x05\xfe\x02\xfe\xa7\x35\x81"
    b"\x84\x00\x00\x00\x00IEND\xaeB`\x82"
)


def test_dry_run_warnings_agree_with_the_text(config: Config, engine: Engine) -> None:
    msg = EmailMessage()
    msg["From"] = "anne@clinic.example"
    msg["To"] = "sms@hub.test"
    msg["Subject"] = "0612345678"
    msg["Message-ID"] = make_msgid(domain="clinic.example")
    msg.set_content("Voici le plan.")
    for name in ("plan.png", "acces.png", "parking.png"):
        msg.add_attachment(PNG, maintype="image", subtype="png", filename=name)

    preview = IntakePolicy(engine, config).preview(msg.as_bytes())

    assert preview["text"].count("\n") == 3  # three short links under the text
    assert not [w for w in preview["warnings"] if "ignored" in w], preview["warnings"]
    assert {"plan.png sent as a link", "acces.png sent as a link"} <= set(preview["warnings"])
