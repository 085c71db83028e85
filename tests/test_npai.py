"""Invalid numbers (NPAI): reported invalid_number in two consecutive sends of an account, a
number goes on the account's invalid list and later sends leave it out."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine
from sqlmodel import select
from typer.testing import CliRunner

from hub.sending import submit as sending
from hub.sending.accounts import create_account
from hub.store.db import session_scope
from hub.store.models import Account, InvalidNumber, Message
from tests.conftest import MakeHub, make_config

BAD = "+33698765432"


@pytest.fixture
async def npai_hub(engine: Engine, account: str, make_hub: MakeHub) -> Any:
    """A hub whose simulator reports BAD as invalid_number."""
    return await make_hub(
        providers={
            "simulator": {"type": "simulator", "report_delay": 3600, "invalid_numbers": [BAD]}
        },
    )


def _submit(hub: Any, number: str, account: str = "acme") -> sending.SubmitResult:
    return sending.submit(
        hub.engine,
        hub.config,
        sending.SubmitRequest(account=account, recipients=[number], text="hello"),
    )


def _send(hub: Any, number: str, account: str = "acme") -> str:
    [r] = _submit(hub, number, account).recipients
    assert r.message_id is not None, r.reason
    return r.message_id


async def _settle(hub: Any) -> None:
    await hub.dispatcher.drain()
    await hub.providers["simulator"].flush_reports()


async def _report(hub: Any, mid: str, status: str, reason: str | None = None) -> None:
    """Post the simulator's delivery report for MID by hand (instead of its own)."""
    with session_scope(hub.engine) as s:
        pmid = s.get(Message, mid).provider_message_id  # type: ignore[union-attr]
    sim = hub.providers["simulator"]
    item = {"id": pmid, "message_id": mid, "status": status, "reason": reason}
    r = await hub.hub_client.post(
        "/callbacks/simulator/dlr",
        json={"reports": [item]},
        headers={"X-Smshub-Secret": sim.secret},
    )
    assert r.status_code == 200, r.text


def _listed(engine: Engine) -> list[tuple[str, str]]:
    with session_scope(engine) as s:
        rows = s.exec(select(Account.name, InvalidNumber.number).join(Account)).all()
    return sorted((a, n) for a, n in rows)


async def test_two_invalid_reports_in_a_row_list_the_number(npai_hub):
    hub = npai_hub
    first = _send(hub, "0698765432")
    await _settle(hub)
    assert _listed(hub.engine) == []
    second = _send(hub, "0698765432")
    await _settle(hub)
    with session_scope(hub.engine) as s:
        for mid in (first, second):
            m = s.get(Message, mid)
            assert m is not None and (m.status, m.reason) == ("undelivered", "invalid_number")
    assert _listed(hub.engine) == [("acme", BAD)]

    result = _submit(hub, "06 98 76 54 32")
    [r] = result.recipients
    assert (r.status, r.message_id) == ("rejected", None)
    assert r.reason == "the number is on the account's invalid-number list"
    # The other numbers of a submission still go.
    mixed = sending.submit(
        hub.engine,
        hub.config,
        sending.SubmitRequest(account="acme", recipients=["0698765432", "0612345678"], text="hi"),
    )
    assert [x.status for x in mixed.recipients] == ["rejected", "queued"]


async def test_a_delivery_in_between_breaks_the_pair(npai_hub):
    hub = npai_hub
    _send(hub, "0698765432")
    await _settle(hub)
    middle = _send(hub, "0698765432")
    await hub.dispatcher.drain()
    hub.providers["simulator"]._pending.clear()  # the phone got it after all
    await _report(hub, middle, "delivered")
    _send(hub, "0698765432")
    await _settle(hub)
    assert _listed(hub.engine) == []
    # Two more invalid in a row after the delivery do list it.
    _send(hub, "0698765432")
    await _settle(hub)
    assert _listed(hub.engine) == [("acme", BAD)]


async def test_reports_out_of_order_and_replayed(npai_hub):
    hub = npai_hub
    sim = hub.providers["simulator"]
    first = _send(hub, "0698765432")
    await hub.dispatcher.drain()
    second = _send(hub, "0698765432")
    await hub.dispatcher.drain()
    sim._pending.clear()
    # The same invalid report twice is one send, not two.
    await _report(hub, second, "undelivered", "invalid_number")
    await _report(hub, second, "undelivered", "invalid_number")
    assert _listed(hub.engine) == []
    # The earlier send's report arrives last: still two consecutive sends.
    await _report(hub, first, "undelivered", "invalid_number")
    assert _listed(hub.engine) == [("acme", BAD)]
    # Listing is idempotent.
    third = _send(hub, "+33698765433")
    await hub.dispatcher.drain()
    await _report(hub, third, "undelivered", "invalid_number")
    assert _listed(hub.engine) == [("acme", BAD)]


async def test_other_reasons_and_other_accounts_do_not_pair(npai_hub):
    hub = npai_hub
    with session_scope(hub.engine) as s:
        create_account(s, "shop", parent="acme", credit_mode="unlimited")
    sim = hub.providers["simulator"]
    # acme: invalid, then expired: not two invalid in a row.
    a1 = _send(hub, "0698765432")
    await hub.dispatcher.drain()
    a2 = _send(hub, "0698765432")
    await hub.dispatcher.drain()
    sim._pending.clear()
    await _report(hub, a1, "undelivered", "invalid_number")
    await _report(hub, a2, "undelivered", "expired")
    # shop (a sub-account): one invalid of its own does not pair with acme's.
    s1 = _send(hub, "0698765432", "shop")
    await _settle(hub)
    assert _listed(hub.engine) == []
    s2 = _send(hub, "0698765432", "shop")
    await _settle(hub)
    assert s1 != s2
    # Listed on the sub-account only: the parent still sends to it.
    assert _listed(hub.engine) == [("shop", BAD)]
    assert _submit(hub, "0698765432", "shop").recipients[0].status == "rejected"
    assert _submit(hub, "0698765432", "acme").recipients[0].status == "queued"


# -- CLI ---------------------------------------------------------------------------------------
def test_cli_list_and_remove(db_url: str, tmp_path: Path, engine: Engine, account: str) -> None:
    from hub.cli import main as cli
    from hub.cli.lists import invalid_app

    with session_scope(engine) as s:
        create_account(s, "shop", parent="acme", credit_mode="unlimited")
        ids = {a.name: a.id for a in s.exec(select(Account)).all()}
        s.add(InvalidNumber(account_id=ids["acme"], number=BAD))
        s.add(InvalidNumber(account_id=ids["shop"], number="+33612345678"))
    runner = CliRunner()

    def run(*args: str) -> tuple[int, str, str]:
        cli._state.clear()
        cli._state["config"] = make_config(db_url, tmp_path)
        result = runner.invoke(invalid_app, list(args))
        if result.exception and not isinstance(result.exception, SystemExit):
            raise result.exception
        return result.exit_code, result.stdout, result.stderr

    try:
        code, out, _ = run("list", "--json")
        assert code == 0
        assert [(d["account"], d["number"]) for d in json.loads(out)] == [
            ("acme", BAD),
            ("shop", "+33612345678"),
        ]
        code, out, _ = run("list", "--account", "shop")
        assert code == 0 and "+33612345678" in out and BAD not in out
        code, _, err = run("remove", "06 12 34 56 78", "--account", "acme")
        assert code == 1 and "not on the invalid list of account 'acme'" in err
        code, _, err = run("remove", "hello", "--account", "acme")
        assert code == 1 and "not a phone number" in err
        code, out, _ = run("remove", "06 98 76 54 32", "--account", "acme")
        assert code == 0 and f"{BAD} removed" in out
        assert _listed(engine) == [("shop", "+33612345678")]
        code, out, _ = run("list", "--account", "acme")
        assert out.strip() == "no invalid numbers"
    finally:
        cli._state.clear()
