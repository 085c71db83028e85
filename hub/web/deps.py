"""The hub serving a request, as one typed FastAPI dependency for the API and the console.

``app.state.hub`` is set once by the composition root (``hub.app``); routes declare
``hub: HubDep`` instead of reading the untyped state themselves.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

from fastapi import Depends, Request

if TYPE_CHECKING:
    from hub.app import Hub


def current_hub(request: Request) -> Hub:
    """The hub serving REQUEST (set on the app by ``hub.api.app.create_api``)."""
    hub: Hub = request.app.state.hub
    return hub


HubDep = Annotated["Hub", Depends(current_hub)]
