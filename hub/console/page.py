"""What every console page route takes, in one dependency: the request, the hub serving it
and the logged-in user (whose session also vouched for the form's CSRF token); with the
page's two steps, reading in a worker thread and rendering, so a route says only what
differs."""

# No `from __future__ import annotations`: FastAPI reads these annotations at runtime.

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse
from sqlmodel import Session

from hub.console.auth import ConsoleUser, User
from hub.console.render import page
from hub.store.db import read_scope, session_scope
from hub.web.deps import HubDep

if TYPE_CHECKING:
    from hub.app import Hub

T = TypeVar("T")


@dataclass(frozen=True)
class PageContext:
    """A console page's request, hub and user."""

    request: Request
    hub: "Hub"
    user: ConsoleUser

    async def read(self, work: Callable[[Session], T]) -> T:
        """WORK in one read-only transaction, in a worker thread."""

        def _run() -> T:
            with read_scope(self.hub.engine) as session:
                return work(session)

        return await asyncio.to_thread(_run)

    async def write(self, work: Callable[[Session], T]) -> T:
        """WORK in one write transaction, in a worker thread."""

        def _run() -> T:
            with session_scope(self.hub.engine) as session:
                return work(session)

        return await asyncio.to_thread(_run)

    def render(
        self, template: str, *, nav: str = "", status: int = 200, **context: Any
    ) -> HTMLResponse:
        """TEMPLATE with CONTEXT, for this user in their language."""
        return page(self.request, self.user, template, status=status, nav=nav, **context)


def _page_context(request: Request, hub: HubDep, user: User) -> PageContext:
    return PageContext(request, hub, user)


Page = Annotated[PageContext, Depends(_page_context)]
