"""Delivery receipts: the text of SMPP 3.4 appendix B, its dates and error codes, and the
spellings of message ids SMSCs use. No I/O."""

from __future__ import annotations

import re
from datetime import datetime, tzinfo

# -- delivery receipts -----------------------------------------------------------------------

_RECEIPT_KEYS = ("id", "sub", "dlvrd", "submit date", "done date", "stat", "err", "text")
_RECEIPT_KEY_RE = re.compile(
    r"(?i)(?:^|(?<=\s))(id|sub|dlvrd|submit[ _]date|done[ _]date|stat|err|text):"
)


def parse_receipt_text(text: str) -> dict[str, str]:
    """The fields of an SMPP 3.4 appendix B receipt ("id:… sub:… … stat:DELIVRD err:… text:…").

    Keys come back lower-case with a space ("submit date"); ``text`` takes the rest of the
    message, since it is free text. Unknown layouts give whatever keys were found.
    """
    matches = list(_RECEIPT_KEY_RE.finditer(text))
    fields: dict[str, str] = {}
    for i, match in enumerate(matches):
        key = match.group(1).lower().replace("_", " ")
        if key in fields:
            continue  # a key inside text: keeps the first (real) one
        if key == "text":
            value = text[match.end() :]
        else:
            end = matches[i + 1].start() if i + 1 < len(matches) else len(text)
            value = text[match.end() : end].strip()
        fields[key] = value
        if key == "text":
            break
    return fields


def format_receipt_text(
    message_id: str,
    stat: str,
    *,
    err: str = "000",
    sub: str = "001",
    dlvrd: str = "001",
    submit_date: str = "",
    done_date: str = "",
    text: str = "",
) -> str:
    """A receipt in the appendix B layout (tests and diagnostics)."""
    return (
        f"id:{message_id} sub:{sub} dlvrd:{dlvrd} submit date:{submit_date} "
        f"done date:{done_date} stat:{stat} err:{err} text:{text[:20]}"
    )


def parse_smpp_date(value: str, tz: tzinfo) -> datetime | None:
    """A receipt date ("YYMMDDhhmm" or "YYMMDDhhmmss") in the SMSC's time zone, or None."""
    value = value.strip()
    if not value.isdigit() or len(value) not in (10, 12):
        return None
    try:
        return datetime(
            2000 + int(value[0:2]),
            int(value[2:4]),
            int(value[4:6]),
            int(value[6:8]),
            int(value[8:10]),
            int(value[10:12]) if len(value) == 12 else 0,
            tzinfo=tz,
        )
    except ValueError:
        return None


def parse_error_code(value: str) -> int | None:
    """The receipt's err: field as a number (decimal as sent by most SMSCs, else hex)."""
    value = value.strip()
    if not value:
        return None
    try:
        return int(value, 10)
    except ValueError:
        try:
            return int(value, 16)
        except ValueError:
            return None


def network_error_code(value: bytes | None) -> tuple[int, int] | None:
    """(network type, error code) of a network_error_code TLV (3 octets)."""
    if value is None or len(value) != 3:
        return None
    return value[0], (value[1] << 8) | value[2]


def message_id_variants(message_id: str) -> list[str]:
    """Other spellings of an id: some SMSCs answer submit_sm in hex and receipt in decimal."""
    variants = []
    mid = message_id.strip()
    if mid and len(mid) <= 32:
        if all(c in "0123456789abcdefABCDEF" for c in mid):
            variants.append(str(int(mid, 16)))
        if mid.isdigit():
            value = int(mid)
            variants += [f"{value:x}", f"{value:X}", f"{value:08x}", f"{value:08X}"]
        if mid.isdigit() and mid != mid.lstrip("0"):
            variants.append(mid.lstrip("0") or "0")
    return [v for v in dict.fromkeys(variants) if v != mid]
