"""`smshub simulator ...`: the built-in SMS simulator (inject an answer, read its log)."""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Annotated, Any

import typer

from hub.cli.common import JsonOpt, emit, fail, get_config, get_engine, table

simulator_app = typer.Typer(help="The built-in SMS simulator.", no_args_is_help=True)


def _simulator(hub: Any) -> Any:
    for provider in hub.providers.values():
        if getattr(provider.settings, "type", None) == "simulator":
            return provider
    fail('no simulator provider is configured ([providers.NAME] with type = "simulator")')


@simulator_app.command("receive")
def simulator_receive(
    sender: Annotated[str, typer.Option("--from", help="The phone that answers.")],
    text: Annotated[str, typer.Option(help="What it says.")],
    to: Annotated[str | None, typer.Option(help="Our number it is sent to.")] = None,
) -> None:
    """Inject an inbound SMS, as if a phone had sent it."""
    from hub.app import Hub
    from hub.core.phone import parse_number

    config = get_config()
    info = parse_number(sender, config.hub.default_region)
    number = info.e164 or sender

    async def _go() -> bool:
        hub = Hub(config, engine=get_engine())
        await hub.start(dispatcher=False)
        try:
            return bool(await _simulator(hub).receive(number, text, to))
        finally:
            await hub.stop()

    if not asyncio.run(_go()):
        fail("the hub did not accept the inbound SMS; see the log above")
    typer.echo(f"inbound SMS from {number} received")


@simulator_app.command("log")
def simulator_log(
    to: Annotated[str | None, typer.Option(help="Only SMS to this number (E.164).")] = None,
    limit: Annotated[int, typer.Option(min=1)] = 50,
    as_json: JsonOpt = False,
) -> None:
    """Show the SMS the simulator has 'sent'."""
    from hub.app import Hub

    provider = _simulator(Hub(get_config(), engine=get_engine()))
    # Streamed: only the last LIMIT matching entries are held, however long the log.
    entries = list(
        deque(
            (e for e in provider.iter_log() if e.get("kind") == "mt" and (not to or e["to"] == to)),
            maxlen=limit,
        )
    )
    emit(
        entries,
        as_json,
        table(
            [[e["at"][:19], e["to"], e["from"] or "", e["text"][:40]] for e in entries],
            ["AT (UTC)", "TO", "FROM", "TEXT"],
        ),
    )
