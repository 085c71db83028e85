"""Signing a user in from a terminal (OAuth device code flow), for the refresh token a
Microsoft 365 / Outlook.com calendar needs: `smshub calendars auth microsoft` calls it."""

from __future__ import annotations

from collections.abc import Callable

import requests

from connectors.calendar.base import short
from connectors.calendar.graph_settings import AUTHORITY, GRAPH_URL
from connectors.calendar.graph_signin import graph_scopes, msal_app, msal_error
from hub.errors import SourceError


def device_code_login(
    client_id: str,
    *,
    tenant_id: str = "common",
    authority: str = AUTHORITY,
    graph_base_url: str = GRAPH_URL,
    read_only: bool = False,
    ca_file: str | None = None,
    show: Callable[[str], None] = print,
    timeout: float = 30.0,
) -> str:
    """Sign a user in from a terminal (OAuth device code flow); their refresh token.

    SHOW receives Microsoft's instruction ("To sign in, use a web browser to open the page
    https://microsoft.com/devicelogin and enter the code ABCD1234..."); the call then blocks
    until the user has signed in (or the code expired, about 15 minutes). Store the result
    in a file or the environment and name it in the calendar's ``refresh_token_file`` /
    ``refresh_token_env``. The app registration must allow public client flows, with the
    delegated permission Calendars.ReadWrite (Calendars.Read when READ_ONLY).
    Raises SourceError with Microsoft's reason when it fails.
    """
    try:
        app = msal_app(
            client_id,
            f"{authority.rstrip('/')}/{tenant_id}",
            secret=None,
            ca_file=ca_file,
            timeout=timeout,
        )
        scopes = graph_scopes(graph_base_url, app_only=False, read_only=read_only)
        flow = app.initiate_device_flow(scopes=scopes)
        if "user_code" not in flow:
            raise SourceError(f"Microsoft refused to start the sign-in: {msal_error(flow)}")
        show(
            str(
                flow.get("message")
                or f"Open {flow['verification_uri']} and enter {flow['user_code']}"
            )
        )
        result = app.acquire_token_by_device_flow(flow)
    except (ValueError, requests.RequestException) as exc:
        raise SourceError(
            f"cannot use the sign-in service {authority}: {short(str(exc))}"
        ) from None
    if "refresh_token" not in result:
        raise SourceError(f"the sign-in did not complete: {msal_error(result)}")
    return str(result["refresh_token"])
