"""Shared pytest configuration: database backends and the real-server fixtures."""

from __future__ import annotations

import os

import pytest

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def require_server(what: str, why: str) -> None:
    """A missing real server fails in CI and skips elsewhere."""
    message = f"{what} is not available: {why}"
    if IN_CI:
        pytest.fail(message, pytrace=False)
    pytest.skip(message)
