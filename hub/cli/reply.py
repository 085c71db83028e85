"""`smshub reply ...`: dry runs of e-mail answers to forwarded SMS."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from hub.cli.common import JsonOpt, emit, read_bytes

reply_app = typer.Typer(help="E-mail answers to forwarded SMS.", no_args_is_help=True)


@reply_app.command("parse")
def reply_parse(
    file: Annotated[Path, typer.Argument(help="The answer as .eml; '-' reads stdin.")],
    as_json: JsonOpt = False,
) -> None:
    """Dry run: the text an e-mail answer would send by SMS (quotes and signature removed)."""
    from hub.mail.parse import extract_reply_text

    raw = sys.stdin.buffer.read() if str(file) == "-" else read_bytes(file)
    text = extract_reply_text(raw)
    emit({"text": text}, as_json, text or "(no new text in this answer)")
