"""How the API documents its error answers.

A domain function raises a hub.errors class, the API answers ``{"error": "..."}`` with that
class's ``http_status`` (hub/errors.py draws the tree with each status); ``_MEANING`` says
what each status means to an API client.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

_MEANING = {
    400: "The request cannot be handled as sent",
    401: "No token, or an unknown or revoked one",
    402: "The balance does not cover it; nothing was charged",
    403: "The account is disabled, or the operation is not allowed for this token",
    404: "Not found among your accounts (another customer's things are answered the same)",
    409: "The object's state does not allow it, or a request with this Idempotency-Key "
    "is still being handled",
    413: "Over a size or count limit; the message names the setting",
    415: "A file of a type that is not accepted",
    422: "Invalid input, a limit exceeded, or an Idempotency-Key used for another request",
    503: "A temporary failure; try again",
}


class ErrorBody(BaseModel):
    """Every error the API answers: one sentence that says what to do."""

    error: str = Field(examples=["no contact list named 'patients' among your accounts"])


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The ``responses=`` of a route answering CODES (401 and 422 are always added)."""
    chosen = sorted({401, *codes} - {422})
    answers: dict[int | str, dict[str, Any]] = {
        code: {"model": ErrorBody, "description": _MEANING.get(code, "Error")} for code in chosen
    }
    # Two shapes: the hub's {"error"} for a value it refuses, FastAPI's {"detail": [...]}
    # for a request whose fields do not match the schema.
    answers[422] = {
        "description": _MEANING[422],
        "content": {
            "application/json": {
                "schema": {
                    "oneOf": [
                        {"$ref": "#/components/schemas/ErrorBody"},
                        {"$ref": "#/components/schemas/HTTPValidationError"},
                    ]
                }
            }
        },
    }
    return answers
