"""Helpers of the tests of the /v1 management resources (issue #17).

The fixtures are test_api.py's (``client``, ``tokens``: acme, its sub-account acme-lyon and
an unrelated account 'other'); these are the plain helpers their tests share.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hub.core.config import Config
from tests.conftest import make_config

# Small bounds, so that pagination and every limit are reached with a handful of rows.
LIMITS = {
    "page_size": 2,
    "max_page_size": 3,
    "max_items": 5,
    "max_upload_bytes": 16_384,
    "max_import_rows": 6,
}


def small_limits(db_url: str, data_dir: Path) -> Config:
    """The test config with LIMITS as its [api] section."""
    return make_config(db_url, data_dir, api=LIMITS)


def auth(token: str, key: str | None = None) -> dict[str, str]:
    headers = {"Authorization": f"Bearer {token}"}
    if key:
        headers["Idempotency-Key"] = key
    return headers


async def all_pages(client: Any, url: str, token: str, field: str, cursor: str) -> list[Any]:
    """Every item of a paged list, following ``next`` (passed as CURSOR) to the end."""
    items: list[Any] = []
    params: dict[str, Any] = {}
    for _ in range(50):
        r = await client.get(url, headers=auth(token), params=params)
        assert r.status_code == 200, r.text
        body = r.json()
        assert len(body[field]) <= LIMITS["page_size"]
        items += body[field]
        if body["next"] is None:
            return items
        params = {cursor: body["next"]}
    raise AssertionError(f"{url} never ended")


async def assert_documented(client: Any, paths: dict[str, set[str]]) -> None:
    """Each of PATHS is in /openapi.json with its METHODS, a summary, a response schema for
    its success answer and documented error answers."""
    spec = (await client.get("/openapi.json")).json()
    for path, methods in paths.items():
        assert path in spec["paths"], path
        for method in methods:
            op = spec["paths"][path][method]
            assert op.get("summary"), (path, method)
            assert op.get("description"), (path, method)
            ok = next(code for code in op["responses"] if code.startswith("2"))
            content = op["responses"][ok].get("content", {})
            assert content, (path, method, "no success schema")
            schema = next(iter(content.values())).get("schema")
            if "application/json" in content:
                assert schema and (schema.get("$ref") or schema.get("type")), (path, method)
            errors = {code for code in op["responses"] if code[0] in "45"}
            assert {"401", "422"} <= errors, (path, method, errors)
            for code in errors - {"422"}:
                ref = op["responses"][code]["content"]["application/json"]["schema"]["$ref"]
                assert ref.endswith("/ErrorBody"), (path, method, code)
            assert op.get("security"), (path, method, "no bearer token documented")
