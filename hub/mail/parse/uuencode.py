"""Files uuencoded inside a plain-text body (``begin 644 photo.png`` … ``end``).

Old clients and some scanners and fax gateways still attach files this way; read as text,
one picture becomes a 97-part SMS of line noise. The blocks are taken out of the text and
handed on as attachments, so the usual attachment rules apply to them (sent as a link, or
refused with the reason).
"""

from __future__ import annotations

import binascii
import mimetypes
import re
from typing import NamedTuple

_BLOCK = re.compile(
    r"^begin [0-7]{3,4} (?P<name>[^\r\n]{1,255})\r?\n(?P<body>.*?)^end[ \t\r]*$\n?",
    re.MULTILINE | re.DOTALL,
)
# Magic numbers of the types an SMS can carry as a link; the name is only a hint.
_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"%PDF-", "application/pdf"),
)
MAX_FILES = 20
"""More blocks than this are left as text (a mail of uuencoded blocks is not a body)."""


class UuFile(NamedTuple):
    """A file decoded from a uuencoded block."""

    filename: str
    content_type: str
    data: bytes


def split_uuencoded(text: str) -> tuple[str, list[UuFile]]:
    """TEXT without its uuencoded blocks, and the files they hold."""
    if "begin " not in text:
        return text, []
    files: list[UuFile] = []

    def take(match: re.Match[str]) -> str:
        if len(files) >= MAX_FILES:
            return match.group(0)
        data = _decode(match.group("body"))
        name = match.group("name").strip()
        files.append(UuFile(name, _content_type(name, data), data))
        return ""

    return _BLOCK.sub(take, text), files


def _decode(body: str) -> bytes:
    out = bytearray()
    for line in body.splitlines():
        if not line or line in ("`", " "):
            continue
        raw = line.encode("latin-1", errors="replace")
        try:
            out += binascii.a2b_uu(raw)
        except binascii.Error:
            # Some encoders pad lines with garbage: decode only the length the line declares.
            declared = (((raw[0] - 32) & 63) * 4 + 5) // 3
            try:
                out += binascii.a2b_uu(raw[:declared])
            except binascii.Error:
                continue
    return bytes(out)


def _content_type(name: str, data: bytes) -> str:
    for magic, content_type in _MAGIC:
        if data.startswith(magic):
            return content_type
    return mimetypes.guess_type(name)[0] or "application/octet-stream"
