"""`smshub` under a memory probe, for `bench/memory.py --probe`: never part of the hub.

Starts tracemalloc before the hub is imported, then on SIGUSR1 writes to PROBE_DIR/N.json
what the C and Python heaps hold: glibc's mallinfo2 (bytes in use and free in the arenas),
SQLite's own heap (sqlite3_memory_used, the same library the sqlite3 module uses), the open
SQLite connections, every engine's pool, and a tracemalloc snapshot (N.pickle) so two
marks can be diffed by line. The bench compares them between the 10,000th and the last
message to tell a Python leak, a SQLite cache and allocator slack apart.
"""

from __future__ import annotations

import ctypes
import gc
import json
import os
import signal
import sys
import threading
import tracemalloc
from pathlib import Path
from typing import Any

# Frames per traced allocation; 0: no tracemalloc (it slows the hub down several times).
FRAMES = int(os.environ.get("PROBE_FRAMES", "0"))
if FRAMES:
    tracemalloc.start(FRAMES)
OUT = Path(os.environ["PROBE_DIR"])


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


def _libc() -> Any:
    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = _MallInfo2
    return libc


def _sqlite() -> Any:
    import _sqlite3

    lib = ctypes.CDLL(_sqlite3.__file__)
    lib.sqlite3_memory_used.restype = ctypes.c_int64
    return lib


def _status(op: int) -> int:
    current, highest = ctypes.c_int64(), ctypes.c_int64()
    SQLITE.sqlite3_status64(op, ctypes.byref(current), ctypes.byref(highest), 0)
    return current.value


LIBC = _libc()
SQLITE = _sqlite()
_count = 0


def dump(*_: Any) -> None:
    global _count
    _count += 1
    gc.collect()
    from sqlalchemy.engine import Engine

    if FRAMES:
        tracemalloc.take_snapshot().dump(str(OUT / f"{_count}.pickle"))
    info = LIBC.mallinfo2()
    objects = gc.get_objects()
    engines = [o for o in objects if isinstance(o, Engine)]
    import sqlite3

    report = {
        "malloc_in_use": info.uordblks + info.hblkhd,
        "malloc_free": info.fordblks,
        "malloc_arena": info.arena,
        "sqlite_heap": SQLITE.sqlite3_memory_used(),
        # Of it, the connections' page caches (SQLITE_STATUS_PAGECACHE_OVERFLOW: all of
        # them without a static page-cache buffer); the rest is mostly prepared statements.
        "sqlite_page_cache": _status(2),
        "sqlite_connections": sum(1 for o in objects if isinstance(o, sqlite3.Connection)),
        "pools": [e.pool.status() for e in engines],
        "threads": threading.active_count(),
        "python_traced": tracemalloc.get_traced_memory()[0],
    }
    (OUT / f"{_count}.json").write_text(json.dumps(report))


signal.signal(signal.SIGUSR1, dump)
# SIGUSR2: give the allocator's free memory back to the system (the bench's last step).
signal.signal(signal.SIGUSR2, lambda *_: LIBC.malloc_trim(0))
sys.argv = ["smshub", *sys.argv[1:]]
from hub.cli.main import main  # noqa: E402 (tracemalloc must see the hub's imports)

main()
