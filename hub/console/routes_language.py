"""The console's language switch: the user's choice, kept on the user (every instance and
every browser the user logs in from sees it)."""

# No `from __future__ import annotations`: FastAPI reads these annotations at runtime.

import asyncio
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response

from hub.console.auth import User
from hub.console.render import redirect
from hub.core import i18n
from hub.core.i18n import gettext as _
from hub.errors import InvalidInput
from hub.store.db import session_scope
from hub.store.models import MailUser
from hub.web.deps import HubDep

router = APIRouter()


def _back(value: str) -> str:
    # Only our own pages (never an open redirect).
    return value if value.startswith("/console") and not value.startswith("//") else "/console/"


@router.post("/language")
async def choose_language(
    request: Request,
    user: User,
    hub: HubDep,
    language: Annotated[str, Form()] = "",
    next: Annotated[str, Form()] = "/console/",
) -> Response:
    """Keep LANGUAGE ("fr", "en"; empty: follow the browser) as the user's choice."""
    chosen = i18n.normalize(language)
    if language and chosen is None:
        raise InvalidInput(f"language: {language!r} is not one of {', '.join(i18n.LANGUAGES)}")

    def _save() -> None:
        with session_scope(hub.engine) as session:
            row = session.get(MailUser, user.user_id)
            if row is not None:
                row.language = chosen
                session.add(row)

    await asyncio.to_thread(_save)
    # The confirmation in the language just chosen.
    with i18n.use(chosen or i18n.console_language(None, request.headers.get("accept-language"))):
        return redirect(_back(next), _("Language changed."))
