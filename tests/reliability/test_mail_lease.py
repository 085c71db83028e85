"""Mail outbox claims are short leases renewed while their worker sends.

Found by tests/reliability/test_multi_instance.py: a dispatcher killed while it held claimed
confirmations left them unsent for the fixed two-minute mail lease, whatever
`claim_lease_seconds` said. Now the hub's mail outbox claims for `claim_lease_seconds`,
renews the claim while it sends (a slow relay keeps its mails), and a dead worker's mails
come back after about one lease.
"""

from __future__ import annotations

import asyncio
import collections
import time
from datetime import timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from hub.mail.outbox import MailOutbox, build_message, queue_mail
from hub.store.db import session_scope
from tests.conftest import MakeHub, make_config


class SlowSender:
    """A relay that takes DELAY seconds per mail; records what it delivered."""

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.delivered: list[str] = []

    async def send(self, message: EmailMessage) -> None:
        await asyncio.sleep(self.delay)
        self.delivered.append(str(message["Message-ID"]))


def _queue(engine: Engine, count: int) -> None:
    with session_scope(engine) as session:
        for n in range(count):
            message = build_message("hub@hub.test", f"user{n}@example.test", f"mail {n}", "body")
            queue_mail(session, message, kind="confirmation", dedupe_key=f"mail-{n}")


async def test_a_dead_workers_mails_come_back_after_the_lease(engine: Engine) -> None:
    _queue(engine, 3)
    lease = timedelta(seconds=1)
    dead = MailOutbox(engine, SlowSender(), lease=lease)
    rows, _ = dead._due(10)  # claimed, then the process died
    assert len(rows) == 3
    sender = SlowSender()
    other = MailOutbox(engine, sender, lease=lease)
    assert await other.send_due() == 0, "a living lease was taken"
    await asyncio.sleep(1.1)
    assert await other.send_due() == 3
    assert len(set(sender.delivered)) == 3


async def test_a_slow_send_keeps_its_claim(engine: Engine) -> None:
    _queue(engine, 2)
    lease = timedelta(seconds=2)
    slow, fast = SlowSender(delay=1.5), SlowSender()
    first = MailOutbox(engine, slow, lease=lease)
    second = MailOutbox(engine, fast, lease=lease)
    claimed = asyncio.Event()
    loop = asyncio.get_running_loop()
    due = first._due

    def due_and_tell(limit: int) -> Any:
        result = due(limit)
        loop.call_soon_threadsafe(claimed.set)
        return result

    first._due = due_and_tell  # type: ignore[method-assign]
    sending = asyncio.create_task(first.send_due())
    await claimed.wait()
    # The two sends take 3 s, half as long again as the lease: renewals keep the claim.
    began = time.monotonic()
    while not sending.done():
        await second.send_due()
        await asyncio.sleep(0.05)
    assert await sending == 2 and time.monotonic() - began > lease.total_seconds()
    assert fast.delivered == []
    assert max(collections.Counter(slow.delivered).values()) == 1


async def test_the_hubs_mail_claims_last_claim_lease_seconds(
    db_url: str, tmp_path: Path, make_hub: MakeHub
) -> None:
    config = make_config(
        db_url,
        tmp_path,
        dispatcher={"claim_lease_seconds": 4.0},
        mail_out={"host": "127.0.0.1", "port": 2525, "starttls": False},
    )
    hub = await make_hub(config=config, engine=None, start=False)
    assert hub.mail_outbox is not None
    assert hub.mail_outbox.lease == timedelta(seconds=4)
