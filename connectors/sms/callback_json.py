"""Reading a provider callback whose body is one JSON object."""

from __future__ import annotations

import json
from typing import Any

from hub.errors import MalformedCallback
from hub.sending.callbacks import CallbackRequest


def json_object(request: CallbackRequest) -> dict[str, Any]:
    """The raw JSON object a provider posts (whatever the content type says)."""
    try:
        body = json.loads(request.body or b"null")
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise MalformedCallback(f"body is not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise MalformedCallback("body must be a JSON object")
    return body
