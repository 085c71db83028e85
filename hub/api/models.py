"""Pydantic models more than one /v1 resource answers with."""

from __future__ import annotations

from pydantic import BaseModel, Field

from hub.web.edge import Text


class RejectedLine(BaseModel):
    """An input left out: its line (or position in the request), what it said, and why."""

    line: int
    input: str
    reason: str = Field(examples=["a landline number cannot receive SMS"])


class NumbersBody(BaseModel):
    """Numbers in any usual format (national ones read in the account's country)."""

    numbers: list[Text] = Field(
        min_length=1,
        description="At most api.max_items numbers",
        examples=[["06 12 34 56 78", "+41 79 123 45 67"]],
    )


class Deleted(BaseModel):
    """What a DELETE removed."""

    deleted: str
    detail: str = ""
