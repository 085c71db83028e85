"""An Idempotency-Key names one request (issue #14): reused with another body it is a 422
that says so; the same body gets the first answer again, and nothing is sent twice."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlmodel import select

from hub.sending.accounts import create_token
from hub.store.db import session_scope
from hub.store.models import Message


@pytest.fixture
async def api(hub: Any, account: str) -> Any:
    with session_scope(hub.engine) as s:
        token = create_token(s, account).token
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=hub.api),
        base_url="http://hub",
        headers={"Authorization": f"Bearer {token}", "Idempotency-Key": "order-42"},
    ) as client:
        yield client


def _messages(engine: Any) -> list[tuple[str, str]]:
    with session_scope(engine) as s:
        return sorted((m.recipient, m.text) for m in s.exec(select(Message)).all())


@pytest.mark.parametrize(
    "second",
    [
        {"to": "0612345678", "text": "Votre commande est annulée"},  # same number, new text
        {"to": ["0612345678", "0698765432"], "text": "Votre commande est prête"},  # new number
        {"to": "0612345678", "text": "Votre commande est prête", "type": "marketing"},
    ],
    ids=["new-text", "new-number", "new-type"],
)
async def test_key_reused_with_another_body_is_422_and_sends_nothing(hub, api, second):
    first = await api.post(
        "/v1/messages", json={"to": "0612345678", "text": "Votre commande est prête"}
    )
    assert first.status_code == 202, first.text
    response = await api.post("/v1/messages", json=second)
    assert response.status_code == 422, response.text
    assert "Idempotency-Key 'order-42' was used with a different request" in response.text
    assert _messages(hub.engine) == [("+33612345678", "Votre commande est prête")]


async def test_same_body_gets_the_first_answer_again(hub, api):
    body = {"to": ["0612345678"], "text": "Votre commande est prête"}
    first = await api.post("/v1/messages", json=body)
    # Key order and spacing of the JSON do not make it another request.
    again = await api.post(
        "/v1/messages",
        content=b'{ "text": "Votre commande est pr\\u00eate",   "to": ["0612345678"] }',
        headers={"Content-Type": "application/json"},
    )
    assert (again.status_code, again.json()) == (first.status_code, first.json())
    assert len(_messages(hub.engine)) == 1


async def test_keys_are_per_account_and_a_refused_request_frees_its_key(hub, api, engine):
    from hub.sending.accounts import create_account
    from hub.sending.credits import top_up

    # A refused request (an empty text) committed nothing: the key stays free for the
    # corrected request.
    refused = await api.post("/v1/messages", json={"to": "0612345678", "text": " "})
    assert refused.status_code == 422
    ok = await api.post("/v1/messages", json={"to": "0612345678", "text": "Bonjour"})
    assert ok.status_code == 202 and ok.json()["recipients"][0]["status"] == "queued"
    # Another account may use the same key for its own request.
    with session_scope(engine) as s:
        create_account(s, "other", region="FR")
        top_up(s, "other", 10)
        token = create_token(s, "other").token
    other = await api.post(
        "/v1/messages",
        json={"to": "0698765432", "text": "Autre chose"},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert other.status_code == 202, other.text


async def test_keys_older_than_their_retention_are_pruned_in_batches(hub, api, engine):
    from datetime import timedelta

    from hub.core.timeutil import utcnow
    from hub.sending import idempotency
    from hub.store.models import IdempotencyKey

    for n in range(5):
        r = await api.post(
            "/v1/messages",
            json={"to": "0612345678", "text": f"n{n}"},
            headers={"Idempotency-Key": f"k{n}"},
        )
        assert r.status_code == 202
    with session_scope(engine) as s:
        rows = s.exec(select(IdempotencyKey).order_by(IdempotencyKey.id)).all()  # type: ignore[arg-type]
        for row in rows[:3]:
            row.created_at = utcnow() - timedelta(hours=25)
            s.add(row)
    # Two rows per transaction: three old keys take two batches; the young ones stay.
    assert idempotency.prune(engine, timedelta(hours=24), batch=2) == 3
    with session_scope(engine) as s:
        assert sorted(r.key for r in s.exec(select(IdempotencyKey)).all()) == ["k3", "k4"]
    assert idempotency.prune(engine, timedelta(hours=24)) == 0
    # A pruned key names a new request again; its messages' own keys still stop a resend.
    again = await api.post(
        "/v1/messages",
        json={"to": "0612345678", "text": "n0"},
        headers={"Idempotency-Key": "k0"},
    )
    assert again.status_code == 202
    assert again.json()["recipients"][0]["status"] != "queued"
    assert len(_messages(hub.engine)) == 5
