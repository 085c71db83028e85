"""The intake's rate limits: mails per sender per minute (counted in SQL, hub.store.limits),
SMS from mail per account per hour."""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Mapping
from datetime import timedelta

from sqlalchemy import func
from sqlmodel import Session, col, select

from hub.core.timeutil import utcnow
from hub.store.models import Message


def sender_limit_key(sender: str) -> str:
    """The rate counter (hub.store.limits) of a sender's mails per minute."""
    # A sender address is what a client wrote: long ones are hashed to fit the key.
    if len(sender) <= 150:
        return f"smtp:sender:{sender}"
    return "smtp:sender:sha256:" + hashlib.sha256(sender.encode("utf-8", "replace")).hexdigest()


class HourlyCount:
    """SMS from mail per account in the last hour, as the hourly limit sees them.

    Counting an account's outbox rows of the last hour for every mail was the dearest query
    of intake, and it grows with the traffic it limits. Here the count is read from SQL at
    most once per RECOUNT seconds per account, and what this process commits in between is
    added to it: rows that leave the hour meanwhile are still counted until the next recount
    (a few seconds on the safe side), other processes' sends are seen at the next recount.
    """

    RECOUNT = 10.0

    def __init__(self, recount: float = RECOUNT) -> None:
        self.recount = recount
        # account id -> (when counted, monotonic clock; the count since then)
        self._counts: dict[int, tuple[float, int]] = {}
        self._lock = threading.Lock()

    def sent(self, session: Session, account_id: int) -> int:
        """SMS from mail the account sent in the last hour (committed ones)."""
        now = time.monotonic()
        with self._lock:
            known = self._counts.get(account_id)
        if known is not None and now - known[0] < self.recount:
            return known[1]
        since = utcnow() - timedelta(hours=1)
        count = int(
            session.exec(
                select(func.count())
                .select_from(Message)
                .where(
                    Message.account_id == account_id,
                    Message.source == "mail",
                    col(Message.created_at) >= since,
                )
            ).one()
        )
        with self._lock:
            self._counts[account_id] = (now, count)
        return count

    def committed(self, sent: Mapping[int, int]) -> None:
        """SENT (account id -> SMS from mail) is committed: count it until the next recount."""
        with self._lock:
            for account_id, n in sent.items():
                known = self._counts.get(account_id)
                if known is not None:
                    self._counts[account_id] = (known[0], known[1] + n)
