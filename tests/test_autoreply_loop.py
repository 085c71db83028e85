"""Two hubs whose auto-responders answer each other stop after one message each.

Hub A and hub B each own a number (valid French mobiles: the auto-responder never answers
short codes or invalid numbers, so the loop must be stopped by the once-per-period rule,
not by a number check). Their simulators are bridged by hand: whatever one hub sends to the
other's number arrives at the other hub as an inbound SMS from the sender's number.
"""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine
from sqlmodel import col, select

from hub.app import Hub
from hub.sending.accounts import create_account
from hub.sending.credits import top_up
from hub.store.db import make_engine, session_scope
from hub.store.models import InboundMessage, Message
from tests.conftest import MakeHub, make_config

NUMBER_A = "+33612340001"
NUMBER_B = "+33612340002"
TEXT_A = "Cabinet Alpha : nous avons bien recu votre message et vous rappelons vite."
TEXT_B = "Garage Beta : absent jusqu'a lundi, nous vous repondrons a notre retour."
MAX_ROUNDS = 10


@dataclass
class Side:
    """One hub of the pair, its number, and how much of its simulator log was bridged."""

    hub: Hub
    number: str
    bridged: int = 0
    received: list[str] = field(default_factory=list)

    @property
    def engine(self) -> Engine:
        return self.hub.engine


def _config(db_url: str, data_dir: Path, number: str, account: str) -> Any:
    return make_config(
        db_url,
        data_dir,
        providers={
            "simulator": {"type": "simulator", "report_delay": 3600.0, "number": number},
        },
        inbound={"number_accounts": {number: account}},
    )


def _account(engine: Engine, name: str, text: str) -> None:
    with session_scope(engine) as s:
        acc = create_account(s, name, region="FR")
        acc.autoreply_enabled = True
        acc.autoreply_text = text
        acc.autoreply_period_hours = 24.0
        s.add(acc)
        top_up(s, name, 100)


@pytest.fixture
async def pair(
    db_url: str, engine: Engine, tmp_path: Path, sqlite_template: Path, make_hub: MakeHub
) -> AsyncIterator[tuple[Side, Side]]:
    """Hub A on the test's database (SQLite or PostgreSQL), hub B on a SQLite file of its own."""
    b_path = tmp_path / "hub-b.db"
    shutil.copy(sqlite_template, b_path)
    b_url = f"sqlite:///{b_path}"
    b_engine = make_engine(b_url)
    _account(engine, "alpha", TEXT_A)
    _account(b_engine, "beta", TEXT_B)
    hub_a = await make_hub(config=_config(db_url, tmp_path / "a", NUMBER_A, "alpha"), start=False)
    hub_b = await make_hub(
        config=_config(b_url, tmp_path / "b", NUMBER_B, "beta"), engine=b_engine, start=False
    )
    await hub_a.start(background=False)
    await hub_b.start(background=False)
    try:
        yield Side(hub_a, NUMBER_A), Side(hub_b, NUMBER_B)
    finally:
        await hub_b.stop()
        await hub_a.stop()
        b_engine.dispose()


async def _bridge(source: Side, target: Side) -> int:
    """Send what SOURCE queued, and hand every new SMS to TARGET's number over to TARGET."""
    assert source.hub.dispatcher is not None
    await source.hub.dispatcher.drain()
    log = [e for e in source.hub.providers["simulator"].read_log() if e["kind"] == "mt"]
    new, source.bridged = log[source.bridged :], len(log)
    for entry in new:
        assert entry["to"] == target.number, f"unexpected SMS from {source.number}: {entry}"
        simulator = target.hub.providers["simulator"]
        assert await simulator.receive(source.number, entry["text"], recipient=target.number)
        target.received.append(entry["text"])
    return len(new)


def _sent(side: Side) -> list[Message]:
    with session_scope(side.engine) as s:
        return list(s.exec(select(Message).order_by(col(Message.created_at))).all())


def _inbound(side: Side) -> list[InboundMessage]:
    with session_scope(side.engine) as s:
        return list(s.exec(select(InboundMessage).order_by(col(InboundMessage.id))).all())


async def test_two_auto_responders_stop_after_one_message_each(pair: tuple[Side, Side]) -> None:
    a, b = pair
    # Someone texts hub A from B's number (say, from the phone B's hub runs on).
    assert await a.hub.providers["simulator"].receive(NUMBER_B, "Bonjour, vous etes ouverts ?")
    rounds = 0
    while await _bridge(a, b) + await _bridge(b, a):
        rounds += 1
        if rounds == MAX_ROUNDS:
            pytest.fail(f"the hubs were still texting each other after {MAX_ROUNDS} rounds")
    # One round: A answers the person, B answers A, A stays quiet; the next moves nothing.
    assert rounds == 1

    sent_a, sent_b = _sent(a), _sent(b)
    assert [(m.source, m.recipient, m.text) for m in sent_a] == [("autoreply", NUMBER_B, TEXT_A)]
    assert [(m.source, m.recipient, m.text) for m in sent_b] == [("autoreply", NUMBER_A, TEXT_B)]
    assert b.received == [TEXT_A] and a.received == [TEXT_B]

    inbound_a, inbound_b = _inbound(a), _inbound(b)
    # A: the person's SMS (answered), then B's auto-reply (matched to A's own auto-reply, and
    # not answered: A already auto-replied to that number in this period).
    assert [(i.sender, i.recipient, i.handling) for i in inbound_a] == [
        (NUMBER_B, NUMBER_A, "autoreply"),
        (NUMBER_B, NUMBER_A, ""),
    ]
    assert inbound_a[0].reply_to_message_id is None
    assert inbound_a[1].reply_to_message_id == sent_a[0].id
    # B: A's auto-reply, out of the blue (matched through number_accounts), answered once.
    assert [(i.sender, i.recipient, i.handling) for i in inbound_b] == [
        (NUMBER_A, NUMBER_B, "autoreply"),
    ]
    assert all(i.account_id is not None for i in inbound_a + inbound_b)
