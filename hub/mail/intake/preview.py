"""The dry run of `smshub mail parse`: what a mail would send, nothing written.

It reads the mail as the intake does (the same parser, subject grammar, number addresses,
attachment rules and warnings), without authorization or limits: the answer is for the
person writing the mail, not a promise the intake will take it.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine

from hub.campaigns import links
from hub.core import phone, segments
from hub.core.config import Config
from hub.mail import parse as mailparse
from hub.mail.intake.addresses import number_domains
from hub.mail.intake.draft import attachment_warnings, expand_lists
from hub.sending.accounts import get_account
from hub.store.db import session_scope


def preview(
    engine: Engine,
    config: Config,
    raw: bytes,
    rcpt_to: list[str] | None = None,
    account: str | None = None,
) -> dict[str, Any]:
    """What RAW, sent to RCPT_TO on ACCOUNT, would send (the dry run)."""
    parsed = mailparse.parse_mail(raw, max_depth=config.smtp.max_mime_depth)
    parts = mailparse.parse_subject(parsed.subject)
    rejected: list[dict[str, str]] = []
    with session_scope(engine) as session:
        domains = number_domains(session)
        region = config.hub.default_region
        track = False
        members: list[str] = []
        if account:
            acc = get_account(session, account)
            region = acc.default_region or region
            track = acc.track_links
            assert acc.id is not None
            members = expand_lists(session, acc.id, parts.lists, rejected)
        else:
            rejected += [
                {
                    "input": f"list:{n}",
                    "reason": "name the account (--account) to expand its contact lists",
                }
                for n in parts.lists
            ]
    by_address, _ = mailparse.numbers_from_addresses(
        (rcpt_to or []) + parsed.to + parsed.cc, domains
    )
    if not by_address:
        rejected += [{"input": u, "reason": "not a phone number"} for u in parts.unknown]
    numbers = list(parts.numbers) + members + by_address
    recipients = _recipients(numbers, region, rejected)
    text, warnings = _text(config, raw, parsed, track)
    count = segments.count(text)
    if count.segments > config.sending.max_parts:
        warnings.append(
            f"the text needs {count.segments} parts; the limit is {config.sending.max_parts}"
        )
    return {
        "recipients": recipients,
        "text": text,
        "segments": count.segments,
        "encoding": count.encoding,
        "rejected": rejected,
        "warnings": warnings,
        "tokens": {k: v for k, v in parts.tokens.items() if k != "pin"},
    }


def _recipients(numbers: list[str], region: str, rejected: list[dict[str, str]]) -> list[str]:
    """NUMBERS normalized (each once); what cannot receive an SMS goes to REJECTED."""
    recipients: list[str] = []
    for raw_number in numbers:
        info = phone.parse_number(raw_number, region)
        if not info.valid or info.e164 is None:
            rejected.append({"input": raw_number, "reason": info.reason or "invalid"})
        elif info.type == "landline":
            rejected.append({"input": raw_number, "reason": "a landline number cannot receive SMS"})
        elif info.e164 not in recipients:
            recipients.append(info.e164)
    return recipients


def _text(
    config: Config, raw: bytes, parsed: mailparse.ParsedMail, track: bool
) -> tuple[str, list[str]]:
    """The SMS text (with the files' links) and the warnings a real intake would give."""
    files, problems, logos = links.check_attachments(
        config, links.mail_attachments(raw, parsed.mime)
    )
    # Each file adds a short link of fixed length: shown with a placeholder code.
    placeholder = links.short_url(config, "x" * links.CODE_LENGTH)
    text = links.with_links(parsed.text, [placeholder] * len(files)) if files else parsed.text
    if track:
        # The account tracks clicks: every URL goes as a per-recipient short link.
        text = links.preview_text(config, text)
    # The same words as a real intake, so that the warnings and the text agree.
    warnings = attachment_warnings(list(parsed.warnings), files, logos)
    warnings += [f"not sendable: {p}" for p in problems]
    if parsed.broken is not None:
        warnings.insert(0, f"refused: {parsed.broken}")
    return text, warnings
