"""The process's memory: the C allocator's free memory given back once a minute, and the
cyclic garbage collector tuned once start-up is done.

`bench/memory.py --probe` showed where an SQLite hub's memory went between its 10,000th and
20,000th message (once IN lists were padded, see hub.store.db.padded): the bytes in use stayed
flat (-0.5 MB) and SQLite's own heap too (-0.7 MB), while the free bytes glibc kept in its
arenas grew (+4.8 MB), and `malloc_trim(0)` handed 5.1 MB of it back at once. That is
fragmentation: SQLite's page caches (a few KB per page, freed whenever another connection
commits in WAL mode) and large Python buffers are freed between live blocks, across one
arena per worker thread, and glibc returns only the top of a heap by itself. Trimming asks
it to release every free page, so the resident size follows what the process uses.
A no-op where the C library has no malloc_trim (musl, macOS).

Garbage collection (``tune_gc``): a first calendar sync of 20,000 appointments allocates
millions of container objects, many alive until its transaction ends. With CPython's default
thresholds (a young collection every 700 new containers) it made ~720 young, 65 middle and
2-4 full collections, each full one walking every object the process holds (modules,
SQLAlchemy's and Jinja's caches, phonenumbers' metadata): 0.5 s on SQLite, 1.0 s on
PostgreSQL (bench/reminders.py part 1, issue #20). What start-up built lives as long as the
process, so it is frozen out of every later collection (``gc.freeze``), and young
collections run every 10,000 new containers instead: cycles still go, a little later, and
the same sync spends 0.05 s (SQLite) and 0.14 s (PostgreSQL) collecting.
"""

from __future__ import annotations

import asyncio
import ctypes
import gc
import logging
import sys
from collections.abc import Callable

log = logging.getLogger("smshub.heap")

# Young collections every 10,000 new container objects (CPython's default: 700); then the
# default ratios for the older generations.
GC_THRESHOLDS = (10_000, 10, 10)

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


def tune_gc_forked() -> None:
    """``tune_gc`` for a process forked from one that had started (a calendar sync worker):
    what it inherited is frozen as it is, without a collection first. A collection writes to
    every object it walks, so each page the two processes shared became the child's own copy
    (a sync worker held 70 MB of its own right after start; see hub.reminders.workers)."""
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def tune_gc() -> None:
    """Once start-up is done: what it built is kept out of every later collection, and
    young collections are rarer (see the module's docstring). Garbage from start-up is
    collected first, so that none is frozen with it."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
