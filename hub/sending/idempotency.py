"""Idempotency keys (the HTTP API's Idempotency-Key, the CLI's --idempotency-key): one key,
one request, one answer.

The key is stored with a fingerprint of the request that first used it (sha256 of the
method, path, account and normalized JSON body) and, once handled, its answer. The same
request again gets that answer again; another request under the same key is refused with a
422 that says so, as payment APIs do, instead of being answered as the first one (its new
text dropped) or sending to its new numbers. The claim is a row in SQL, so it holds across
instances.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import Engine, delete, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from hub.core.timeutil import as_utc, utcnow
from hub.errors import IdempotencyKeyBusy, IdempotencyKeyReused
from hub.store.db import delete_older, session_scope, table
from hub.store.models import IdempotencyKey

# A claim with no answer after this long belongs to a request that died (a crash between
# claiming the key and storing the answer): the next try with the same request takes it
# over. What the dead request committed is found again by the per-recipient keys.
STALE_CLAIM = timedelta(seconds=60)
# Keys deleted per transaction when pruning (short write locks), and per prune at most.
PRUNE_BATCH = 1000
PRUNE_MOST = 100_000


@dataclass(frozen=True)
class Replay:
    """The answer the first request with this key got."""

    status_code: int
    body: dict[str, Any]


def fingerprint(method: str, path: str, account_id: int, body: Any) -> str:
    """sha256 of the canonical request; BODY is the parsed JSON (key order and spacing of
    the original text do not matter, defaults filled in by the model do not either)."""
    canonical = json.dumps(
        {"method": method.upper(), "path": path, "account": account_id, "body": body},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=True,
    )
    return hashlib.sha256(canonical.encode("ascii")).hexdigest()


def _reused(key: str) -> IdempotencyKeyReused:
    return IdempotencyKeyReused(
        f"Idempotency-Key {key!r} was used with a different request; a key "
        "names one request: send the same request again to get its answer, "
        "or use a new key for a new request"
    )


def remember_in(session: Session, account_id: int, key: str, door: str, print_: str) -> bool:
    """For a door that handles its request in SESSION's transaction (the CLI): store KEY
    (kept apart from other doors' keys by DOOR) with the request's fingerprint PRINT_, and
    say whether the same request used it before (its messages are then found again by their
    per-recipient keys). Raises IdempotencyKeyReused, with the API's message, when another
    request used it. The key is stored, or not, with what the request commits."""
    stored = f"{door}:{key}"
    row = _locked(session, account_id, stored)
    if row is None:
        session.add(IdempotencyKey(account_id=account_id, key=stored, fingerprint=print_))
        session.flush()
        return False
    if row.fingerprint != print_:
        raise _reused(key)
    return True


def begin(engine: Engine, account_id: int, key: str, print_: str) -> Replay | None:
    """Claim KEY for the request whose fingerprint is PRINT_.

    Returns None when the caller must handle the request (then ``finish`` or ``abandon``),
    or the first answer when the same request was answered already. Raises
    IdempotencyKeyReused for another request, IdempotencyKeyBusy while the first is running.
    """
    for _ in range(2):
        try:
            with session_scope(engine) as session:
                row = _locked(session, account_id, key)
                if row is None:
                    session.add(IdempotencyKey(account_id=account_id, key=key, fingerprint=print_))
                    return None
                if row.fingerprint != print_:
                    raise _reused(key)
                if row.response is not None and row.status_code is not None:
                    return Replay(row.status_code, json.loads(row.response))
                if utcnow() - as_utc(row.created_at) < STALE_CLAIM:
                    raise IdempotencyKeyBusy(
                        f"a request with Idempotency-Key {key!r} is still being handled; "
                        "retry in a few seconds to get its answer"
                    )
                row.created_at = utcnow()  # take over the claim of a request that died
                return None
        except IntegrityError:
            continue  # another request claimed it at the same moment: read its claim
    raise IdempotencyKeyBusy(f"Idempotency-Key {key!r} is being claimed by another request")


def _locked(session: Session, account_id: int, key: str) -> IdempotencyKey | None:
    """KEY's row, locked until the transaction ends (None: not stored yet)."""
    return session.exec(
        select(IdempotencyKey)
        .where(IdempotencyKey.account_id == account_id, IdempotencyKey.key == key)
        .with_for_update()
    ).first()


def finish(engine: Engine, account_id: int, key: str, status_code: int, body: Any) -> None:
    """Store the answer of the request that claimed KEY."""
    with session_scope(engine) as session:
        session.execute(
            update(IdempotencyKey)
            .where(
                IdempotencyKey.account_id == account_id,  # type: ignore[arg-type]
                IdempotencyKey.key == key,  # type: ignore[arg-type]
            )
            .values(status_code=status_code, response=json.dumps(body, ensure_ascii=True))
        )


def abandon(engine: Engine, account_id: int, key: str) -> None:
    """Free KEY after its request was refused (nothing was committed): the corrected
    request may use it."""
    with session_scope(engine) as session:
        session.execute(
            delete(IdempotencyKey).where(
                IdempotencyKey.account_id == account_id,  # type: ignore[arg-type]
                IdempotencyKey.key == key,  # type: ignore[arg-type]
                IdempotencyKey.response.is_(None),  # type: ignore[union-attr]
            )
        )


def prune(engine: Engine, older_than: timedelta, *, batch: int = PRUNE_BATCH) -> int:
    """Delete the keys first used more than OLDER_THAN ago, BATCH rows per transaction (the
    oldest first, by id, so each batch reads little) and at most PRUNE_MOST per call (the
    rest at the next); returns how many were deleted."""
    created_at = table(IdempotencyKey).c.created_at
    return delete_older(engine, created_at, utcnow() - older_than, batch=batch, most=PRUNE_MOST)
