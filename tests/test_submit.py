"""submit(): validation, normalization, opt-out lists, idempotency and credits."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import Engine, func
from sqlmodel import select

from hub.core.config import Config
from hub.core.timeutil import utcnow
from hub.errors import AccountDisabled, InsufficientCredits, InvalidInput, NotFound
from hub.sending import submit as sending
from hub.sending.accounts import create_account, set_disabled
from hub.sending.credits import ledger_problems, top_up
from hub.store.db import session_scope
from hub.store.models import BlacklistEntry, InvalidNumber, LedgerEntry, Message


def _submit(engine: Engine, config: Config, **kw: object) -> sending.SubmitResult:
    args: dict[str, object] = {"account": "acme", "recipients": ["0612345678"], "text": "hi"}
    args.update(kw)
    return sending.submit(engine, config, sending.SubmitRequest(**args))  # type: ignore[arg-type]


def _count(engine: Engine, model: type) -> int:
    with session_scope(engine) as s:
        return int(s.exec(select(func.count()).select_from(model)).one())


def test_recipients_normalized_deduplicated_and_charged(engine, config, account):
    result = _submit(
        engine,
        config,
        recipients=["06 12 34 56 78", "+33612345678", "0041791234567", "01 23 45 67 89", "hello"],
        text="Bonjour",
    )
    statuses = [(r.input, r.status, r.e164) for r in result.recipients]
    assert statuses[0] == ("06 12 34 56 78", "queued", "+33612345678")
    assert statuses[1][1] == "duplicate"
    assert statuses[2] == ("0041791234567", "queued", "+41791234567")
    assert statuses[3][1] == "rejected" and "landline" in (result.recipients[3].reason or "")
    assert statuses[4][1] == "rejected"
    assert result.credits_charged == 2
    assert result.balance_after == 98
    with session_scope(engine) as s:
        assert ledger_problems(s) == []


def test_blacklisted_and_invalid_listed_numbers_are_left_out_and_not_charged(
    engine, config, account
):
    with session_scope(engine) as s:
        s.add(BlacklistEntry(account_id=1, number="+33612345678", source="stop"))
        s.add(InvalidNumber(account_id=1, number="+33698765432"))
    result = _submit(engine, config, recipients=["0612345678", "0698765432", "0611111111"])
    assert [r.status for r in result.recipients] == ["rejected", "rejected", "queued"]
    assert "blacklist" in (result.recipients[0].reason or "")
    assert "invalid" in (result.recipients[1].reason or "")
    assert result.credits_charged == 1


def test_parent_blacklist_covers_sub_accounts(engine, config, account):
    with session_scope(engine) as s:
        create_account(s, "acme-lyon", parent="acme", credit_mode="unlimited")
        s.add(BlacklistEntry(account_id=1, number="+33612345678", source="stop"))
    result = _submit(engine, config, account="acme-lyon")
    assert result.recipients[0].status == "rejected"


def test_idempotency_key_never_sends_twice(engine, config, account):
    first = _submit(engine, config, idempotency_key="k1", recipients=["0612345678", "0698765432"])
    second = _submit(engine, config, idempotency_key="k1", recipients=["0612345678", "0698765432"])
    assert [r.status for r in second.recipients] == ["duplicate", "duplicate"]
    assert [r.message_id for r in second.recipients] == [r.message_id for r in first.recipients]
    assert second.credits_charged == 0
    assert _count(engine, Message) == 2


@pytest.mark.parametrize(
    ("kw", "error", "words"),
    [
        ({"text": "   "}, InvalidInput, "empty"),
        ({"text": "x" * 2000}, InvalidInput, "max_parts"),
        ({"account": "nobody"}, NotFound, "accounts list"),
        ({"recipients": []}, InvalidInput, "recipient"),
        ({"sender": "Way too long sender"}, InvalidInput, "sender"),
        ({"type": "spam"}, InvalidInput, "marketing"),
    ],
)
def test_bad_input_writes_nothing(engine, config, account, kw, error, words):
    with pytest.raises(error, match=words):
        _submit(engine, config, **kw)
    assert _count(engine, Message) == 0
    assert _count(engine, LedgerEntry) == 1  # the top-up only


def test_insufficient_credits_charges_nothing(engine, config, account):
    numbers = [f"06{n:08d}" for n in range(12345600, 12345700)]  # 100 recipients
    with pytest.raises(InsufficientCredits, match="100 credits, 200 are needed"):
        _submit(engine, config, recipients=numbers, text="é" * 100 + "ж")  # 2 parts each
    assert _count(engine, Message) == 0


def test_disabled_parent_blocks_sub_account(engine, config, account):
    with session_scope(engine) as s:
        create_account(s, "acme-lyon", parent="acme", credit_mode="unlimited")
        set_disabled(s, "acme")
    with pytest.raises(AccountDisabled, match="acme"):
        _submit(engine, config, account="acme-lyon")


def test_unlimited_sub_account_draws_from_parent(engine, config, account):
    with session_scope(engine) as s:
        create_account(s, "acme-lyon", parent="acme", credit_mode="unlimited")
    result = _submit(engine, config, account="acme-lyon")
    assert result.balance_after == 99
    with session_scope(engine) as s:
        msg = s.exec(select(Message)).one()
        assert (msg.account_id, msg.charged_account_id) == (2, 1)


def test_country_prices_and_part_count(engine, config, account):
    config.sending.country_credits = {"CH": 3}
    result = _submit(engine, config, recipients=["+41791234567"], text="a" * 161)
    assert result.segments == 2
    assert result.credits_charged == 6


def test_scheduled_message_can_be_cancelled_with_refund(engine, config, account):
    result = _submit(engine, config, send_at=utcnow() + timedelta(hours=2))
    assert result.recipients[0].status == "scheduled"
    with session_scope(engine) as s:
        cancelled = sending.cancel(s, result.recipients[0].message_id or "")
        assert cancelled.status == "cancelled"
    with session_scope(engine) as s:
        from hub.sending.accounts import get_account

        assert get_account(s, "acme").balance == 100
        assert ledger_problems(s) == []
    with session_scope(engine) as s, pytest.raises(Exception, match="only queued"):
        sending.cancel(s, result.recipients[0].message_id or "")


def test_top_up_rejects_non_positive(engine, account):
    with session_scope(engine) as s, pytest.raises(InvalidInput):
        top_up(s, "acme", 0)


# -- campaign rules (hub.compliance) ----------------------------------------------------------
import time_machine  # noqa: E402

from hub.compliance import MarketingHours  # noqa: E402


@time_machine.travel("2025-01-12 11:00:00+00:00", tick=False)  # a Sunday, noon in Paris
def test_marketing_outside_hours_is_deferred_to_the_recipients_next_hour(engine, config, account):
    result = _submit(
        engine,
        config,
        type="marketing",
        sender="ACME",
        text="x" * 155,
        recipients=["0612345678", "+41791234567"],
    )
    assert [r.status for r in result.recipients] == ["scheduled", "scheduled"]
    assert result.segments == 2  # the opt-out mention pushed 155 characters into 2 parts
    assert any("cannot reply" in w for w in result.warnings)
    with session_scope(engine) as s:
        rows = {m.recipient: m for m in s.exec(select(Message)).all()}
    fr = rows["+33612345678"]
    assert fr.text.endswith("\nSTOP au 36173") and fr.segments == 2 and fr.scheduled
    assert fr.due_at.replace(tzinfo=None).isoformat() == "2025-01-13T07:00:00"
    assert rows["+41791234567"].due_at.replace(tzinfo=None).isoformat() == "2025-01-13T07:00:00"


@time_machine.travel("2025-01-13 09:00:00+00:00", tick=False)  # Monday 10:00 in Paris
def test_marketing_inside_hours_and_alerts_go_now(engine, config, account):
    marketing = _submit(engine, config, type="marketing", sender="ACME")
    alert = _submit(engine, config, type="alert", sender="ACME")
    assert marketing.recipients[0].status == alert.recipients[0].status == "queued"


@time_machine.travel("2025-01-12 11:00:00+00:00", tick=False)
def test_refuse_mode_and_sender_rules_raise_before_charging(engine, config, account):
    refusing = config.model_copy(update={"marketing_hours": MarketingHours(outside_hours="refuse")})
    with pytest.raises(InvalidInput, match="Sunday 2025-01-12 12:00"):
        _submit(engine, refusing, type="marketing", sender="ACME")
    with pytest.raises(InvalidInput, match="BE numbers"):
        _submit(engine, config, sender="ACME", recipients=["0612345678", "+32470123456"])
    with pytest.raises(InvalidInput, match="FR numbers"):
        _submit(engine, config, sender="ACME PROMO")
    assert _count(engine, Message) == 0
