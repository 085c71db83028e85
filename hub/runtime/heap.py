"""Giving the C allocator's free memory back to the system, once a minute.

`bench/memory.py --probe` showed where an SQLite hub's memory went between its 10,000th and
20,000th message (once IN lists were padded, see hub.store.db.padded): the bytes in use stayed
flat (-0.5 MB) and SQLite's own heap too (-0.7 MB), while the free bytes glibc kept in its
arenas grew (+4.8 MB), and `malloc_trim(0)` handed 5.1 MB of it back at once. That is
fragmentation: SQLite's page caches (a few KB per page, freed whenever another connection
commits in WAL mode) and large Python buffers are freed between live blocks, across one
arena per worker thread, and glibc returns only the top of a heap by itself. Trimming asks
it to release every free page, so the resident size follows what the process uses.
A no-op where the C library has no malloc_trim (musl, macOS).
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import sys
from collections.abc import Callable

log = logging.getLogger("smshub.heap")

# Seconds between trims: each takes a few milliseconds (a walk of the arenas).
TRIM_INTERVAL = 60.0


def _malloc_trim() -> Callable[[int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None)
    except OSError:
        return None
    trim = getattr(libc, "malloc_trim", None)
    if trim is None:
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    found: Callable[[int], int] = trim
    return found


_TRIM = _malloc_trim()


def release_free_memory() -> bool:
    """Return the allocator's free pages to the system; False where that cannot be done."""
    if _TRIM is None:
        return False
    _TRIM(0)
    return True


async def trim_periodically(interval: float = TRIM_INTERVAL) -> None:
    """Trim every INTERVAL seconds until cancelled (in a worker thread: glibc takes each
    arena's lock while it walks it)."""
    if _TRIM is None:
        return
    while True:
        await asyncio.sleep(interval)
        try:
            await asyncio.to_thread(release_free_memory)
        except Exception:  # never worth stopping the hub for
            log.exception("returning free memory to the system failed")
