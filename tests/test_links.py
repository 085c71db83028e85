"""Hosted files and short links: upload, redirect, clicks per recipient, mail attachments."""

from __future__ import annotations

import json
import struct
import zlib
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlmodel import col, select
from typer.testing import CliRunner

from hub.campaigns import links
from hub.core import segments
from hub.inbound.webhooks import add_endpoint
from hub.mail.intake.addresses import MailLogin, add_intake_address, add_mail_user
from hub.mail.intake.policy import IntakePolicy, MailEnvelope
from hub.sending import submit as sending
from hub.sending.accounts import create_account, create_token
from hub.sending.credits import top_up
from hub.store.db import session_scope
from hub.store.models import HostedFile, LinkClick, Message, ShortLink, WebhookDelivery
from tests.conftest import make_config

DATA = Path(__file__).parent / "data" / "mail"
PUBLIC = "https://sms.example.test"


def tiny_png() -> bytes:
    """A real 1x1 red PNG, built by hand (signature, IHDR, IDAT, IEND with their CRCs)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body) & 0xFFFFFFFF
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)  # 1x1, 8-bit RGB
    pixels = zlib.compress(b"\x00\xff\x00\x00")  # filter byte + one red pixel
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )


def tiny_pdf() -> bytes:
    """A one-page PDF with a correct cross-reference table."""
    objects = [
        b"<</Type/Catalog/Pages 2 0 R>>",
        b"<</Type/Pages/Kids[3 0 R]/Count 1>>",
        b"<</Type/Page/Parent 2 0 R/MediaBox[0 0 200 200]>>",
    ]
    out = b"%PDF-1.4\n"
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj" % number + body + b"endobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer<</Size %d/Root 1 0 R>>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return out


@pytest.fixture
def config(db_url: str, tmp_path: Path) -> Any:
    return make_config(
        db_url, tmp_path, hub={"public_url": PUBLIC + "/"}, links={"max_file_size": 4096}
    )


@pytest.fixture
def tokens(engine: Any, account: str) -> dict[str, str]:
    """API tokens of acme and of an unrelated account."""
    with session_scope(engine) as s:
        create_account(s, "other")
        top_up(s, "other", 10)
        return {name: create_token(s, name).token for name in ("acme", "other")}


@pytest.fixture
async def client(hub: Any) -> Any:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=hub.api), base_url="http://hub"
    ) as c:
        yield c


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _path(short_url: str) -> str:
    assert short_url.startswith(PUBLIC + "/s/")
    return short_url.removeprefix(PUBLIC)


def _acme_id(engine: Any) -> int:
    from hub.sending.accounts import get_account

    with session_scope(engine) as s:
        acc_id = get_account(s, "acme").id
        assert acc_id is not None
        return acc_id


# -- short links ------------------------------------------------------------------------------
async def test_shorten_then_click_records_number_agent_and_webhook(hub, client, tokens, engine):
    with session_scope(engine) as s:
        add_endpoint(s, "acme", "https://hooks.acme.test/in", ["link.clicked"])
    r = await client.post(
        "/v1/links",
        headers=_auth(tokens["acme"]),
        json={"url": "https://shop.example/promo?id=7"},
    )
    assert r.status_code == 201, r.text
    link = r.json()
    assert len(link["code"]) == links.CODE_LENGTH
    assert len(link["short_url"]) == links.link_length(hub.config)

    # The same target personalised for one recipient: its click names the number.
    acme_id = _acme_id(engine)
    with session_scope(engine) as s:
        text = links.personalize_links(
            s,
            acme_id,
            "Promo: https://shop.example/promo?id=7.",
            "+33612345678",
            "msg1",
            config=hub.config,
        )
    personal = text.removeprefix("Promo: ").removesuffix(".")

    r = await client.get(_path(link["short_url"]), headers={"User-Agent": "Anon/1.0"})
    assert r.status_code == 302
    assert r.headers["location"] == "https://shop.example/promo?id=7"
    r = await client.get(_path(personal), headers={"User-Agent": "Mozilla/5.0 (iPhone)"})
    assert r.status_code == 302
    assert r.headers["location"] == "https://shop.example/promo?id=7"
    # A HEAD (link preview, checker) is answered but not counted.
    assert (await client.head(_path(personal))).status_code == 302

    with session_scope(engine) as s:
        clicks = s.exec(select(LinkClick).order_by(col(LinkClick.id))).all()
        assert [(c.number, c.user_agent) for c in clicks] == [
            (None, "Anon/1.0"),
            ("+33612345678", "Mozilla/5.0 (iPhone)"),
        ]
        deliveries = s.exec(select(WebhookDelivery).order_by(col(WebhookDelivery.id))).all()
    assert [d.event_type for d in deliveries] == ["link.clicked", "link.clicked"]
    event = json.loads(deliveries[1].payload)
    assert event["data"]["number"] == "+33612345678"
    assert event["data"]["message_id"] == "msg1"
    assert event["data"]["user_agent"] == "Mozilla/5.0 (iPhone)"
    assert event["data"]["target_url"] == "https://shop.example/promo?id=7"

    r = await client.get(f"/v1/links/{link['code']}", headers=_auth(tokens["acme"]))
    assert r.json()["clicks"] == 1
    r = await client.get(f"/v1/links/{link['code']}", headers=_auth(tokens["other"]))
    assert r.status_code == 404


async def test_unknown_code_is_a_404_page(client):
    for path in ("/s/Zz9Zz9Zz", "/s/not-a-code", "/s/%3Cscript%3E"):
        r = await client.get(path)
        assert r.status_code == 404
        assert r.headers["content-type"].startswith("text/html")
        assert "does not exist" in r.text
        assert "<script>" not in r.text


async def test_links_need_a_token_and_a_real_url(client, tokens):
    assert (await client.post("/v1/links", json={"url": "https://x.example"})).status_code == 401
    for bad in ("ftp://x.example/file", "not a url", "https://", "javascript:alert(1)"):
        r = await client.post("/v1/links", headers=_auth(tokens["acme"]), json={"url": bad})
        assert r.status_code == 422, bad
        assert "URL" in r.json()["error"]


# -- files ------------------------------------------------------------------------------------
async def test_upload_png_and_pdf_then_serve_them_inline(hub, client, tokens):
    for name, data, ctype, served_name in [
        ("logo.png", tiny_png(), "image/png", "logo.png"),
        # The name lies and tries a path: the content decides the type, the name is cleaned.
        ("../../compte rendu.html", tiny_pdf(), "application/pdf", "compte rendu.pdf"),
    ]:
        r = await client.post(
            "/v1/files",
            headers=_auth(tokens["acme"]),
            files={"file": (name, data, "application/octet-stream")},
        )
        assert r.status_code == 201, r.text
        body = r.json()
        assert body["content_type"] == ctype
        assert body["size"] == len(data)
        assert body["name"] == served_name
        assert body["url"] == f"{PUBLIC}/v1/files/{body['id']}"

        r = await client.get(_path(body["short_url"]))
        assert r.status_code == 200
        assert r.content == data
        assert r.headers["content-type"] == ctype
        assert r.headers["x-content-type-options"] == "nosniff"
        disposition = r.headers["content-disposition"]
        assert disposition.startswith("inline; filename=")
        assert "/" not in disposition and ".." not in disposition

        r = await client.get(f"/v1/files/{body['id']}", headers=_auth(tokens["acme"]))
        assert r.content == data
        r = await client.get(f"/v1/files/{body['id']}", headers=_auth(tokens["other"]))
        assert r.status_code == 404


async def test_wrong_type_or_too_large_file_is_refused(client, tokens, engine):
    for name, data in [
        ("photo.png", b"<html><script>alert(1)</script></html>"),  # not what its name says
        ("notes.txt", b"hello"),
        ("empty.pdf", b""),
    ]:
        r = await client.post(
            "/v1/files", headers=_auth(tokens["acme"]), files={"file": (name, data, "image/png")}
        )
        assert r.status_code == 415, r.text
        assert "PNG, GIF, JPEG or PDF" in r.json()["error"]
    big = tiny_png() + b"\x00" * 5000
    r = await client.post(
        "/v1/files", headers=_auth(tokens["acme"]), files={"file": ("big.png", big, "image/png")}
    )
    assert r.status_code == 413
    assert "4 KB" in r.json()["error"] and "max_file_size" in r.json()["error"]
    with session_scope(engine) as s:
        assert s.exec(select(HostedFile)).all() == []
        assert s.exec(select(ShortLink)).all() == []


def test_detect_type_reads_magic_bytes() -> None:
    assert links.detect_type(tiny_png()).content_type == "image/png"  # type: ignore[union-attr]
    assert links.detect_type(b"GIF89a....").content_type == "image/gif"  # type: ignore[union-attr]
    assert links.detect_type(b"\xff\xd8\xff\xe0JFIF").content_type == "image/jpeg"  # type: ignore[union-attr]
    assert links.detect_type(tiny_pdf()).content_type == "application/pdf"  # type: ignore[union-attr]
    assert links.detect_type(b"PK\x03\x04 docx") is None
    assert links.detect_type(b" %PDF-1.4") is None


# -- personalised links -----------------------------------------------------------------------
def test_find_urls_leaves_sentence_punctuation_out() -> None:
    text = (
        "Voir https://a.example/x. Et (https://b.example/wiki/Foo_(bar)), "
        "puis http://c.example:8080/p?q=1&r=2! Fin"
    )
    found = [text[s:e] for s, e in links.find_urls(text)]
    assert found == [
        "https://a.example/x",
        "https://b.example/wiki/Foo_(bar)",
        "http://c.example:8080/p?q=1&r=2",
    ]
    assert links.find_urls("broken http://[::1 and https:// alone") == []


def test_own_short_links_are_not_shortened_again(config, engine, account) -> None:
    # An own link that is not one of the account's (here: no such code) stays as written;
    # the account's own links are copied per recipient (tests/test_click_tracking.py).
    acme_id = _acme_id(engine)
    text = f"Deja court: {PUBLIC}/s/AbCd1234 et https://long.example/page"
    with session_scope(engine) as s:
        final = links.personalize_links(s, acme_id, text, "+33612345678", "m1", config=config)
        [link] = s.exec(select(ShortLink)).all()
    assert final == f"Deja court: {PUBLIC}/s/AbCd1234 et {PUBLIC}/s/{link.code}"
    assert link.target_url == "https://long.example/page"
    # The preview shows every link as a placeholder of the very same length.
    shown = links.preview_text(config, text)
    assert shown == f"Deja court: {PUBLIC}/s/xxxxxxxx et {PUBLIC}/s/xxxxxxxx"
    assert len(shown) == len(final)


async def test_personalised_links_are_distinct_per_recipient_and_counted(hub, engine, account):
    text = "Votre offre: https://shop.example/offre/printemps-2027?utm_source=sms a bientot"
    result = hub.submit(
        sending.SubmitRequest(
            account="acme",
            recipients=["06 12 34 56 78", "06 98 76 54 32"],
            text=text,
            shorten_links=True,
        )
    )
    assert len(result.accepted) == 2
    with session_scope(engine) as s:
        messages = s.exec(select(Message).order_by(col(Message.recipient))).all()
        shorts = s.exec(select(ShortLink).order_by(col(ShortLink.number))).all()
        assert [(m.recipient, m.id) for m in messages] == [
            (link.number, link.message_id) for link in shorts
        ]
        assert {link.target_url for link in shorts} == {
            "https://shop.example/offre/printemps-2027?utm_source=sms"
        }
        assert len({link.code for link in shorts}) == 2
        for message, link in zip(messages, shorts, strict=True):
            assert message.text == (f"Votre offre: {PUBLIC}/s/{link.code} a bientot")
            # Counted on the text as sent: same parts for every recipient, as charged.
            assert segments.count(message.text).segments == message.segments
            assert len(message.text) == len(text) - len(link.target_url) + links.link_length(
                hub.config
            )
    assert result.segments == 1
    assert result.credits_charged == 2


async def test_api_send_can_shorten_links(hub, client, tokens, engine):
    r = await client.post(
        "/v1/messages",
        headers=_auth(tokens["acme"]),
        json={"to": "0612345678", "text": "Lien: https://x.example/a", "shorten_links": True},
    )
    assert r.status_code == 202, r.text
    with session_scope(engine) as s:
        [message] = s.exec(select(Message)).all()
        [link] = s.exec(select(ShortLink)).all()
    assert message.text == f"Lien: {PUBLIC}/s/{link.code}"
    assert link.number == "+33612345678"


def test_preview_text_counts_like_the_personalised_text(config, engine, account) -> None:
    # A URL with accents makes the original text UCS-2; its short link is plain GSM-7.
    text = "Résultats: https://exemple.test/é-" + "x" * 200
    preview = links.preview_text(config, text)
    acme_id = _acme_id(engine)
    with session_scope(engine) as s:
        final = links.personalize_links(s, acme_id, text, "+33612345678", "m", config=config)
    assert segments.count(preview) == segments.count(final)
    assert segments.count(final).encoding == segments.GSM7


# -- mail attachments -------------------------------------------------------------------------
@pytest.fixture
def intake(engine: Any, account: str) -> MailLogin:
    with session_scope(engine) as s:
        add_intake_address(s, "acme", "sms@hub.example.com", require_auth=True)
        user = add_mail_user(s, "acme", "reception", "correct horse battery")
        assert user.id is not None
        return MailLogin(user_id=user.id, username="reception", account_id=user.account_id)


def test_mail_pdf_attachment_goes_as_a_link_and_logo_is_left_out(config, engine, intake):
    raw = (DATA / "pdf_attachment.eml").read_bytes()
    policy = IntakePolicy(engine, config)
    outcome = policy.take(
        MailEnvelope(raw, "accueil@cabinet-martin.example", ["sms@hub.example.com"], login=intake)
    )
    assert outcome.accepted, outcome.reply
    assert "compte-rendu.pdf sent as a link" in outcome.warnings
    assert "image image001.png left out" in outcome.warnings
    with session_scope(engine) as s:
        [hosted] = s.exec(select(HostedFile)).all()
        [link] = s.exec(select(ShortLink)).all()
        [message] = s.exec(select(Message)).all()
    assert hosted.content_type == "application/pdf" and hosted.name == "compte-rendu.pdf"
    assert link.file_id == hosted.id
    assert message.text.endswith(f"\n{PUBLIC}/s/{link.code}")
    assert message.segments == segments.count(message.text).segments

    # The same mail again: nothing sent, nothing hosted twice.
    again = policy.take(
        MailEnvelope(raw, "accueil@cabinet-martin.example", ["sms@hub.example.com"], login=intake)
    )
    assert again.duplicate
    with session_scope(engine) as s:
        assert len(s.exec(select(HostedFile)).all()) == 1


def _mail_with(name: str, data: bytes, maintype: str, subtype: str) -> bytes:
    msg = EmailMessage()
    msg["From"] = "anne@clinic.example"
    msg["To"] = "sms@hub.example.com"
    msg["Subject"] = "06 12 34 56 78"
    msg["Message-ID"] = f"<{name}@clinic.example>"
    msg.set_content("Voici le document")
    msg.add_attachment(data, maintype=maintype, subtype=subtype, filename=name)
    return msg.as_bytes()


def test_mail_with_other_attachment_types_is_refused_with_the_reason(config, engine, intake):
    policy = IntakePolicy(engine, config)
    for name, data, maintype, subtype, why in [
        ("devis.docx", b"PK\x03\x04....", "application", "octet-stream", "not a PNG"),
        ("faux.pdf", b"<html></html>", "application", "pdf", "not a PNG"),
        ("gros.png", tiny_png() + b"\0" * 5000, "image", "png", "the limit is 4 KB"),
    ]:
        raw = _mail_with(name, data, maintype, subtype)
        outcome = policy.take(
            MailEnvelope(raw, "anne@clinic.example", ["sms@hub.example.com"], login=intake)
        )
        assert not outcome.accepted
        assert outcome.reply.startswith("550 5.6.0 only PNG, GIF, JPEG and PDF"), outcome.reply
        assert name in outcome.reply and why in outcome.reply
    with session_scope(engine) as s:
        assert s.exec(select(HostedFile)).all() == []
        assert s.exec(select(Message)).all() == []


def test_mail_png_attachment_with_no_text_sends_the_link_alone(config, engine, intake):
    msg = EmailMessage()
    msg["From"] = "anne@clinic.example"
    msg["To"] = "sms@hub.example.com"
    msg["Subject"] = "06 12 34 56 78"
    msg.set_content("")
    msg.add_attachment(tiny_png(), maintype="image", subtype="png", filename="plan.png")
    outcome = IntakePolicy(engine, config).take(
        MailEnvelope(msg.as_bytes(), "anne@clinic.example", ["sms@hub.example.com"], login=intake)
    )
    assert outcome.accepted, outcome.reply
    with session_scope(engine) as s:
        [message] = s.exec(select(Message)).all()
        [link] = s.exec(select(ShortLink)).all()
    assert message.text == f"{PUBLIC}/s/{link.code}"


# -- CLI --------------------------------------------------------------------------------------
@pytest.fixture
def smshub(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    from hub.cli import main as cli

    cfg = tmp_path / "smshub.toml"
    cfg.write_text(
        f'[hub]\ndata_dir = "{tmp_path}"\npublic_url = "{PUBLIC}"\n[database]\nurl = "{db_url}"\n'
    )
    monkeypatch.setenv("SMSHUB_CONFIG", str(cfg))
    runner = CliRunner()

    def run(*args: str) -> tuple[int, str, str]:
        cli._state.clear()
        result = runner.invoke(cli.app, list(args))
        if result.exception and not isinstance(result.exception, SystemExit):
            raise result.exception
        return result.exit_code, result.stdout, result.stderr

    return run


async def test_cli_upload_shorten_and_clicks(smshub, tmp_path, account, client):
    png = tmp_path / "plan.png"
    png.write_bytes(tiny_png())
    code, out, _ = smshub("files", "upload", "acme", str(png))
    assert code == 0
    file_url = out.strip()
    assert file_url.startswith(f"{PUBLIC}/s/")

    code, out, _ = smshub("links", "shorten", "acme", "https://x.example/a", "--json")
    assert code == 0
    link_url = json.loads(out)["short_url"]

    await client.get(_path(file_url), headers={"User-Agent": "UA-1"})
    await client.get(_path(link_url), headers={"User-Agent": "UA-2"})
    code, out, _ = smshub("links", "clicks", "--account", "acme", "--json")
    assert code == 0
    clicks = json.loads(out)
    assert [(c["user_agent"], c["file"], c["target"]) for c in clicks] == [
        ("UA-2", None, "https://x.example/a"),
        ("UA-1", "plan.png", None),
    ]

    notes = tmp_path / "notes.txt"
    notes.write_text("hello")
    code, _, err = smshub("files", "upload", "acme", str(notes))
    assert code == 1
    assert "not a PNG, GIF, JPEG or PDF" in err
