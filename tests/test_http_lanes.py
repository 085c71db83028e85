"""HttpLanes: a fixed set of one-connection clients, lent one request at a time."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from connectors.http_lanes import HttpLanes


def _lanes(size: int) -> HttpLanes:
    return HttpLanes(size, timeout=httpx.Timeout(1.0), keepalive_expiry=5.0)


async def test_a_borrower_waits_while_every_client_is_lent() -> None:
    lanes = _lanes(2)
    lanes.open()

    async def borrow_once() -> httpx.AsyncClient:
        async with lanes.borrow() as client:
            return client

    try:
        async with lanes.borrow() as first, lanes.borrow() as second:
            assert first is not second
            waiting = asyncio.ensure_future(borrow_once())
            await asyncio.sleep(0.01)
            assert not waiting.done()
        assert (await waiting) in (first, second)
    finally:
        await lanes.aclose()


async def test_the_client_used_last_is_lent_first() -> None:
    lanes = _lanes(3)
    lanes.open()
    try:
        seen = set()
        for _ in range(5):
            async with lanes.borrow() as client:
                seen.add(id(client))
        # One warm connection serves a sequential sender; the spare ones stay unopened.
        assert len(seen) == 1
    finally:
        await lanes.aclose()


async def test_lanes_must_be_opened_first() -> None:
    lanes = _lanes(1)
    assert not lanes.is_open
    with pytest.raises(RuntimeError, match="open"):
        async with lanes.borrow():
            pass
    lanes.open()
    assert lanes.is_open
    await lanes.aclose()
    assert not lanes.is_open
