"""Console pages: account settings (intake addresses and users, API tokens, webhooks,
blacklist, invalid numbers), one module per page, gathered under one router."""

# No `from __future__ import annotations`: FastAPI reads these annotations at runtime.

from fastapi import APIRouter

from hub.console import (
    settings_blacklist,
    settings_intake,
    settings_invalid,
    settings_tokens,
    settings_users,
    settings_webhooks,
)

router = APIRouter()
for _module in (
    settings_intake,
    settings_users,
    settings_tokens,
    settings_webhooks,
    settings_blacklist,
    settings_invalid,
):
    router.include_router(_module.router)
