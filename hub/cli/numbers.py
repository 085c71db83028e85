"""`smshub numbers ...`: phone number checks."""

from __future__ import annotations

from typing import Annotated

import typer

from hub.cli.common import JsonOpt, emit, get_config, table

numbers_app = typer.Typer(help="Phone number checks.", no_args_is_help=True)


@numbers_app.command("check")
def numbers_check(
    numbers: Annotated[list[str], typer.Argument(help="Numbers in any format.")],
    region: Annotated[str | None, typer.Option(help="Country for national numbers.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Normalize numbers to E.164 and tell mobile, landline, other or invalid."""
    from hub.core.phone import parse_number

    region = (region or get_config().hub.default_region).upper()
    data = [parse_number(n, region).to_dict() for n in numbers]
    emit(
        data,
        as_json,
        table(
            [
                [d["input"], d["e164"] or "-", d["country"] or "-", d["type"], d["reason"] or ""]
                for d in data
            ],
            ["INPUT", "E.164", "COUNTRY", "TYPE", "REASON"],
        ),
        ok=any(d["valid"] for d in data),
    )
