"""What the /v1 resources share: work in a transaction, page sizes, the Idempotency-Key,
bounded uploads and counts.

A route's blocking work runs with ``in_session`` (a worker thread, one transaction); work
on the account a route's ``?account=`` names is bound by ``Caller.on_account``.

Lists follow the convention of ``GET /v1/messages``: ``limit`` items at most (default
``api.page_size``, at most ``api.max_page_size``), and a cursor from the previous page
(``after`` for lists in name or number order, ``before`` for newest-first ones) that the
answer gives as ``next`` while more items follow.

A POST that creates or changes something takes ``ChangeDep``: its ``Idempotency-Key``
header is handled by hub.sending.idempotency exactly as for ``POST /v1/messages``
(``once_per_key``): the same request again gets its first answer again (with
``Idempotent-Replayed: true``), another request under the same key is a 422, a request
whose first try is still running a 409.
"""

# No `from __future__ import annotations` here: FastAPI resolves dependency annotations at
# runtime.

import asyncio
import hashlib
from collections.abc import Awaitable, Callable, Sequence, Sized
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

from fastapi import Depends, Header, Query, Request, UploadFile
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse
from sqlmodel import Session

from hub.api.auth import Caller, CallerDep
from hub.errors import InvalidInput, TooLarge
from hub.sending import idempotency
from hub.store.db import session_scope
from hub.store.models import Account
from hub.web.deps import HubDep

if TYPE_CHECKING:
    from hub.app import Hub

KEY_HELP = (
    "Makes a retry safe: the same request with the same key gets the first answer again; "
    "another request under a used key is refused (422)."
)

#: The optional Idempotency-Key header of a POST.
IdempotencyKey = Annotated[
    str | None, Header(alias="Idempotency-Key", max_length=200, description=KEY_HELP)
]


T = TypeVar("T")

#: What runs in a request's transaction given the account it acts on (``Caller.on_account``),
#: answering JSON.
AccountWork = Callable[[Session, Account], dict[str, Any]]


async def in_session(hub: "Hub", work: Callable[[Session], T]) -> T:
    """WORK (blocking) in a worker thread, inside one transaction of HUB's database."""

    def _run() -> T:
        with session_scope(hub.engine) as session:
            return work(session)

    return await asyncio.to_thread(_run)


async def page_limit(
    hub: HubDep,
    limit: Annotated[
        int | None,
        Query(
            ge=1,
            description="Items on this page (default api.page_size, at most api.max_page_size)",
        ),
    ] = None,
) -> int:
    """The page size a list request asks for, checked against the configured bounds."""
    bounds = hub.config.api
    if limit is None:
        return min(bounds.page_size, bounds.max_page_size)
    if limit > bounds.max_page_size:
        raise InvalidInput(
            f"limit {limit} is over the largest page, {bounds.max_page_size} "
            "(api.max_page_size); ask for fewer and follow `next`"
        )
    return limit


LimitDep = Annotated[int, Depends(page_limit)]

Row = TypeVar("Row")
Cursor = TypeVar("Cursor")


def next_cursor(rows: Sequence[Row], limit: int, cursor: Callable[[Row], Cursor]) -> Cursor | None:
    """The ``next`` of a page: the last row's cursor when the page is full (more may follow,
    so the caller asks again from there), None when this page is the last."""
    return cursor(rows[-1]) if rows and len(rows) == limit else None


def check_count(hub: "Hub", items: Sized, what: str) -> None:
    """Refuse more than api.max_items numbers (or other items) in one JSON request."""
    most = hub.config.api.max_items
    if len(items) > most:
        raise TooLarge(
            f"{len(items)} {what} in one request; the limit is {most} (api.max_items): "
            "send them in several requests, or import a file"
        )


def check_rows(hub: "Hub", rows: int, filename: str) -> None:
    """Refuse a file of more than api.max_import_rows rows."""
    most = hub.config.api.max_import_rows
    if rows > most:
        raise TooLarge(
            f"{filename} has {rows} rows; the limit is {most} (api.max_import_rows): "
            "split it into several imports"
        )


async def read_upload(hub: "Hub", file: UploadFile) -> tuple[bytes, str]:
    """The uploaded file's bytes and name, refused past api.max_upload_bytes (read one byte
    past the limit: enough to know, never the whole of a huge upload)."""
    most = hub.config.api.max_upload_bytes
    data = await file.read(most + 1)
    name = file.filename or "upload"
    if len(data) > most:
        raise TooLarge(
            f"{name} is over {most} bytes (api.max_upload_bytes); split it into several imports"
        )
    return data, name


def file_print(data: bytes, name: str, **fields: Any) -> dict[str, Any]:
    """What identifies an upload request for its Idempotency-Key: the file's digest, its
    name and the other form fields (the bytes themselves are not kept)."""
    return {"file": hashlib.sha256(data).hexdigest(), "filename": name, **fields}


@dataclass(frozen=True)
class Change:
    """A /v1 request that creates or changes something: who asks, and its Idempotency-Key."""

    request: Request
    hub: "Hub"
    who: Caller
    key: str | None

    async def answer(
        self, body: Any, status_code: int, work: Callable[[Session], Any]
    ) -> JSONResponse:
        """Run WORK once per Idempotency-Key (as ``in_session`` does) and answer its result.

        BODY is what identifies the request besides its method and path (the parsed JSON,
        or ``file_print`` of an upload). Without a key WORK simply runs.
        """
        request = self.request
        # The query (?account=...) names the request as much as its body does.
        named = {"body": jsonable_encoder(body), "query": sorted(request.query_params.items())}
        print_ = idempotency.fingerprint(
            request.method, request.url.path, self.who.account_id, named
        )
        return await once_per_key(
            self.hub, self.who, self.key, print_, status_code, lambda: in_session(self.hub, work)
        )


async def change_of(
    request: Request, hub: HubDep, who: CallerDep, idempotency_key: IdempotencyKey = None
) -> Change:
    """The dependency of a POST that creates or changes something."""
    return Change(request, hub, who, idempotency_key)


ChangeDep = Annotated[Change, Depends(change_of)]


async def once_per_key(
    hub: "Hub",
    who: Caller,
    key: str | None,
    print_: str,
    status_code: int,
    run: Callable[[], Awaitable[Any]],
) -> JSONResponse:
    """Await RUN once per Idempotency-Key KEY and answer its result with STATUS_CODE.

    PRINT_ is the request's ``idempotency.fingerprint``: the same key with the same print
    gets the stored answer again, with another print a 422. Without a key RUN simply runs.
    """
    engine = hub.engine
    if key:
        replay = await asyncio.to_thread(idempotency.begin, engine, who.account_id, key, print_)
        if replay is not None:
            return JSONResponse(
                replay.body,
                status_code=replay.status_code,
                headers={"Idempotent-Replayed": "true"},
            )
    try:
        answer = jsonable_encoder(await run())
    except Exception:
        if key:
            await asyncio.to_thread(idempotency.abandon, engine, who.account_id, key)
        raise
    if key:
        await asyncio.to_thread(
            idempotency.finish, engine, who.account_id, key, status_code, answer
        )
    return JSONResponse(answer, status_code=status_code)
