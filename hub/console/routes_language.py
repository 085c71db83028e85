"""The console's language switch: the user's choice, kept on the user (every instance and
every browser the user logs in from sees it)."""

# No `from __future__ import annotations`: FastAPI reads these annotations at runtime.

from typing import Annotated

from fastapi import APIRouter, Form
from fastapi.responses import Response
from sqlmodel import Session

from hub.console.page import Page
from hub.console.render import redirect
from hub.core import i18n
from hub.core.i18n import gettext as _
from hub.errors import InvalidInput
from hub.store.models import MailUser

router = APIRouter()


def _back(value: str) -> str:
    # Only our own pages (never an open redirect).
    return value if value.startswith("/console") and not value.startswith("//") else "/console/"


@router.post("/language")
async def choose_language(
    ui: Page,
    language: Annotated[str, Form()] = "",
    next: Annotated[str, Form()] = "/console/",
) -> Response:
    """Keep LANGUAGE ("fr", "en"; empty: follow the browser) as the user's choice."""
    chosen = i18n.normalize(language)
    if language and chosen is None:
        raise InvalidInput(f"language: {language!r} is not one of {', '.join(i18n.LANGUAGES)}")

    def _save(session: Session) -> None:
        row = session.get(MailUser, ui.user.user_id)
        if row is not None:
            row.language = chosen
            session.add(row)

    await ui.write(_save)
    # The confirmation in the language just chosen.
    with i18n.use(chosen or i18n.console_language(None, ui.request.headers.get("accept-language"))):
        return redirect(_back(next), _("Language changed."))
