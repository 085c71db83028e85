"""The new text of an e-mail answer to a forwarded SMS, to be sent back as an SMS."""

from __future__ import annotations

from hub.mail.parse.body import BodyOptions, extract_text
from hub.mail.parse.message import ParsedMail, parse_mail


def extract_reply_text(
    parsed_or_raw: ParsedMail | bytes | str, options: BodyOptions | None = None
) -> str:
    """Only what the person wrote in the answer: no quote, forward, signature or disclaimer.

    Accepts a parsed mail, raw mail bytes, or a plain-text body. When nothing is written
    above the quote, the text written below it (bottom-posting) is used; an empty result
    means the answer has no new text and the caller should say so.
    """
    if isinstance(parsed_or_raw, bytes):
        parsed_or_raw = parse_mail(parsed_or_raw, options)
    if isinstance(parsed_or_raw, ParsedMail):
        body, html = parsed_or_raw.body, parsed_or_raw.body_type == "text/html"
    else:
        body, html = parsed_or_raw, False
    return extract_text(body, html=html, options=options, reply=True).text
