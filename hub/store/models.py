"""SQL tables: the one truth of the hub. Times are stored in UTC."""

from __future__ import annotations

import enum
import os
import time
from datetime import datetime

from sqlalchemy import BigInteger, Column, DateTime, Index, UniqueConstraint, false
from sqlalchemy import text as sql_text
from sqlmodel import Field, SQLModel

from hub.core.timeutil import utcnow

# Ids have the form of a UUIDv7 (RFC 9562) as 32 hex digits: 48 bits of Unix time in
# milliseconds, the version (7), 12 random bits, the variant, 62 random bits. Ids made about
# the same time sort together: a new message's id lands at the right end of every index that
# holds it (its primary key, the history indexes ending with it, reminders.message_id)
# instead of on a random leaf page: PostgreSQL took ~25 % less CPU to COPY a first sync's
# 20,000 messages, ~4 % less over the whole sync (bench/README.md, sixth look). 74 random
# bits remain: an id is still not guessable, and it was never a credential (trust comes from
# tokens and signatures).
_RANDOM_BITS = (1 << 80) - 1
_UUID7_CLEAR = _RANDOM_BITS & ~((0xF << 76) | (0x3 << 62))
_UUID7_SET = (0x7 << 76) | (0x2 << 62)


def _time_bits() -> int:
    """Now in Unix milliseconds, in the id's top 48 bits, with the version and variant."""
    return (time.time_ns() // 1_000_000) << 80 | _UUID7_SET


def new_id() -> str:
    """A message or batch id: a UUIDv7's 32 hex digits (see above), URL-safe."""
    return f"{_time_bits() | int.from_bytes(os.urandom(10), 'big') & _UUID7_CLEAR:032x}"


def new_ids(count: int) -> list[str]:
    """COUNT ids of new_id()'s form, made together (one time, one urandom read and one
    big-integer masking for the lot: a first calendar sync makes 20,000); ~6x cheaper than
    COUNT new_id() (500 ids: 0.22 ms against 1.28 ms)."""
    if count <= 0:
        return []
    clear = int.from_bytes(_UUID7_CLEAR.to_bytes(16, "big") * count, "big")
    put = int.from_bytes(_time_bits().to_bytes(16, "big") * count, "big")
    value = int.from_bytes(os.urandom(16 * count), "big") & clear | put
    digits = f"{value:0{32 * count}x}"
    return [digits[i : i + 32] for i in range(0, 32 * count, 32)]


def _ts(nullable: bool = True, index: bool = False) -> Column:  # type: ignore[type-arg,unused-ignore]
    return Column(DateTime(timezone=True), nullable=nullable, index=index)


class CreditMode(enum.StrEnum):
    LIMITED = "limited"  # has its own balance
    UNLIMITED = "unlimited"  # draws from its parent's balance


class Account(SQLModel, table=True):
    __tablename__ = "accounts"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(index=True, unique=True, max_length=64)
    parent_id: int | None = Field(default=None, foreign_key="accounts.id", index=True)
    credit_mode: str = Field(default=CreditMode.LIMITED.value, max_length=16)
    balance: int = 0
    disabled: bool = False
    default_region: str | None = Field(default=None, max_length=2)
    default_sender: str | None = Field(default=None, max_length=16)
    # Provider names tried in order; empty means the configured default route.
    route: str = Field(default="", max_length=255)
    # Where inbound SMS are forwarded by e-mail when no intake address says otherwise.
    reply_mailbox: str = Field(default="", max_length=255)
    # The auto-responder (SMS answering): on/off, its text, and at most one per number per
    # this many hours.
    autoreply_enabled: bool = False
    autoreply_text: str = Field(default="", max_length=1000)
    autoreply_period_hours: float = 24.0
    # Balance alert: below this many credits (None: off), by e-mail and/or SMS, once per
    # crossing; re-armed when the balance is back above it.
    alert_threshold: int | None = None
    alert_email: str = Field(default="", max_length=255)
    alert_sms: str = Field(default="", max_length=20)
    alert_armed: bool = True
    # Night hours for every send (not only reminders and marketing), in the recipient's local
    # time: "off", "hold" (wait until NIGHT_END) or "warn" (send, with a warning), between
    # NIGHT_START and NIGHT_END ("HH:MM").
    night_mode: str = Field(default="off", max_length=8)
    night_start: str = Field(default="21:00", max_length=5)
    night_end: str = Field(default="08:00", max_length=5)
    # Click tracking by default: every door (API, console, campaigns, mail) replaces the
    # text's URLs with short links of each recipient's own (hub.campaigns.links), unless told
    # not to.
    track_links: bool = False
    # Language of the mails and SMS texts the hub writes for this account ("fr", "en");
    # None: [hub] locale, else the language of the account's region (hub.core.i18n).
    locale: str | None = Field(default=None, max_length=16)
    created_at: datetime = Field(default_factory=utcnow, sa_column=_ts(nullable=False))


class LedgerKind(enum.StrEnum):
    TOPUP = "topup"
    TRANSFER_IN = "transfer_in"
    TRANSFER_OUT = "transfer_out"
    RESET_IN = "reset_in"
    RESET_OUT = "reset_out"
    CHARGE = "charge"
    REFUND = "refund"


class LedgerEntry(SQLModel, table=True):
    """Every change of a balance; the sum of an account's amounts equals its balance."""

    __tablename__ = "ledger"
    # An account's ledger is read newest first, a page at a time (the console).
    __table_args__ = (Index("ix_ledger_account_id", "account_id", "id"),)

    id: int | None = Field(default=None, primary_key=True)
    # The account whose balance changed.
    account_id: int = Field(foreign_key="accounts.id")
    # The account that acted (the sub-account that sent, the other side of a transfer).
    origin_account_id: int | None = Field(default=None, foreign_key="accounts.id")
    kind: str = Field(max_length=16)
    amount: int
    balance_after: int
    message_id: str | None = Field(default=None, max_length=32, index=True)
    batch_id: str | None = Field(default=None, max_length=32)
    note: str = Field(default="", max_length=255)
    created_at: datetime = Field(default_factory=utcnow, sa_column=_ts(nullable=False))


class ApiToken(SQLModel, table=True):
    __tablename__ = "api_tokens"

    id: int | None = Field(default=None, primary_key=True)
    account_id: int = Field(foreign_key="accounts.id", index=True)
    name: str = Field(default="", max_length=64)
    # SHA-256 of the whole token: tokens are 32 random bytes, so a slow hash adds nothing.
    token_hash: str = Field(max_length=64, unique=True)
    prefix: str = Field(max_length=16)
    created_at: datetime = Field(default_factory=utcnow, sa_column=_ts(nullable=False))
    revoked_at: datetime | None = Field(default=None, sa_column=_ts())


class MessageStatus(enum.StrEnum):
    QUEUED = "queued"
    # Held by a dispatcher (a lease), its provider call not started yet.
    CLAIMED = "claimed"
    # Its provider call has started: after a crash it may or may not have gone out.
    SUBMITTING = "submitting"
    SENT = "sent"
    DELIVERED = "delivered"
    UNDELIVERED = "undelivered"
    DR_UNAVAILABLE = "dr_unavailable"
    FAILED = "failed"
    CANCELLED = "cancelled"
    UNKNOWN = "unknown"


FINAL_STATUSES = frozenset(
    {
        MessageStatus.DELIVERED,
        MessageStatus.UNDELIVERED,
        MessageStatus.DR_UNAVAILABLE,
        MessageStatus.FAILED,
        MessageStatus.CANCELLED,
        MessageStatus.UNKNOWN,
    }
)


class MessageType(enum.StrEnum):
    ALERT = "alert"
    MARKETING = "marketing"


class Message(SQLModel, table=True):
    """One SMS to one recipient: the outbox row and its history."""

    __tablename__ = "messages"
    __table_args__ = (
        Index("ix_messages_due", "status", "due_at"),
        # The console's history pages by (created_at, id) within each of these indexes
        # (hub.console.history_query): ending with the id keeps a page a short index scan
        # even inside a batch of rows that share their creation time. The included columns
        # (PostgreSQL only) let the counts per state read the index alone.
        Index(
            "ix_messages_account_created",
            "account_id",
            "created_at",
            "id",
            postgresql_include=["status"],
        ),
        # Also the per-account hourly cap of each door, which counts its own source only.
        Index(
            "ix_messages_account_source_created",
            "account_id",
            "source",
            "created_at",
            "id",
            postgresql_include=["status"],
        ),
        Index("ix_messages_account_status_created", "account_id", "status", "created_at", "id"),
        # A number, batch or campaign is filtered to the user's accounts, and counted per
        # state, from the index alone (PostgreSQL); a campaign's report also sums its parts,
        # and the replies page finds a number's last answer (source) there.
        Index(
            "ix_messages_recipient_created",
            "recipient",
            "created_at",
            "id",
            postgresql_include=["account_id", "status", "source"],
        ),
        Index(
            "ix_messages_batch_created",
            "batch_id",
            "created_at",
            "id",
            postgresql_include=["account_id", "status"],
        ),
        # Partial (migration 0013): only a campaign's messages, and only messages a provider
        # accepted, are in these two; the rows a sync or submit writes skip them. Every
        # query using them says campaign_id = / IN, provider_message_id IN, which both
        # planners know implies IS NOT NULL.
        Index(
            "ix_messages_campaign_created",
            "campaign_id",
            "created_at",
            "id",
            postgresql_include=["account_id", "status", "segments"],
            sqlite_where=sql_text("campaign_id IS NOT NULL"),
            postgresql_where=sql_text("campaign_id IS NOT NULL"),
        ),
        Index(
            "ix_messages_provider_ref",
            "provider",
            "provider_message_id",
            sqlite_where=sql_text("provider_message_id IS NOT NULL"),
            postgresql_where=sql_text("provider_message_id IS NOT NULL"),
        ),
    )

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    account_id: int = Field(foreign_key="accounts.id")
    # The account whose balance paid (itself, or the nearest limited ancestor).
    charged_account_id: int = Field(foreign_key="accounts.id")
    # Indexed (with recipient and campaign_id) by the composite indexes above.
    batch_id: str = Field(max_length=32)
    idempotency_key: str = Field(max_length=255, unique=True)
    recipient: str = Field(max_length=20)
    sender: str | None = Field(default=None, max_length=16)
    text: str
    encoding: str = Field(max_length=8)
    segments: int
    credits: int
    type: str = Field(default=MessageType.ALERT.value, max_length=16)
    source: str = Field(default="api", max_length=16)
    status: str = Field(default=MessageStatus.QUEUED.value, max_length=16)
    reason: str | None = Field(default=None, max_length=32)
    detail: str = Field(default="", max_length=500)
    scheduled: bool = False
    campaign_id: int | None = Field(default=None)
    created_at: datetime = Field(default_factory=utcnow, sa_column=_ts(nullable=False))
    # When the dispatcher may take it (the send time, or the next retry).
    due_at: datetime = Field(default_factory=utcnow, sa_column=_ts(nullable=False))
    attempts: int = 0
    # Bumped for each deliberate re-send (after a network_error report); providers deduplicate
    # on (id, send_seq), so a crash-recovery re-send of the same attempt is never doubled.
    send_seq: int = 0
    claimed_by: str | None = Field(default=None, max_length=64)
    claimed_at: datetime | None = Field(default=None, sa_column=_ts())
    provider: str | None = Field(default=None, max_length=64)
    provider_message_id: str | None = Field(default=None, max_length=128)
    sent_at: datetime | None = Field(default=None, sa_column=_ts())
    # First time a provider accepted it: the 48-hour report window counts from here.
    first_sent_at: datetime | None = Field(default=None, sa_column=_ts())
    final_at: datetime | None = Field(default=None, sa_column=_ts())
    updated_at: datetime = Field(default_factory=utcnow, sa_column=_ts(nullable=False))


class MessageEvent(SQLModel, table=True):
    """What happened to a message, in order; provider reports are unique per event key."""

    __tablename__ = "message_events"
    __table_args__ = (UniqueConstraint("provider", "event_key", name="uq_message_events_key"),)

    id: int | None = Field(default=None, primary_key=True)
    message_id: str = Field(max_length=32, index=True)
    status: str = Field(max_length=16)
    reason: str | None = Field(default=None, max_length=32)
    detail: str = Field(default="", max_length=500)
    provider: str | None = Field(default=None, max_length=64)
    event_key: str | None = Field(default=None, max_length=255)
    created_at: datetime = Field(default_factory=utcnow, sa_column=_ts(nullable=False))


class InboundMessage(SQLModel, table=True):
    __tablename__ = "inbound_messages"
    __table_args__ = (UniqueConstraint("provider", "event_key", name="uq_inbound_key"),)

    id: int | None = Field(default=None, primary_key=True)
    provider: str = Field(max_length=64)
    event_key: str = Field(max_length=255)
    account_id: int | None = Field(default=None, foreign_key="accounts.id", index=True)
    sender: str = Field(max_length=32, index=True)
    recipient: str = Field(max_length=32)
    text: str
    # The message of ours it answers, when one was found.
    reply_to_message_id: str | None = Field(default=None, max_length=32)
    # stop | start | autoreply-sent | forwarded ... what the hub did with it.
    handling: str = Field(default="", max_length=64)
    # The mailbox it was forwarded to (replies must come from there).
    forwarded_to: str = Field(default="", max_length=255)
    received_at: datetime = Field(default_factory=utcnow, sa_column=_ts(nullable=False))


class BlacklistEntry(SQLModel, table=True):
    """Numbers an account must never send to (STOP, manual opt-out)."""

    __tablename__ = "blacklist"
    __table_args__ = (UniqueConstraint("account_id", "number", name="uq_blacklist_number"),)

    id: int | None = Field(default=None, primary_key=True)
    account_id: int = Field(foreign_key="accounts.id")
    number: str = Field(max_length=20)
    source: str = Field(default="manual", max_length=32)
    note: str = Field(default="", max_length=255)
    created_at: datetime = Field(default_factory=utcnow, sa_column=_ts(nullable=False))


class InvalidNumber(SQLModel, table=True):
    """Numbers reported invalid twice in a row (NPAI): left out of later sends."""

    __tablename__ = "invalid_numbers"
    __table_args__ = (UniqueConstraint("account_id", "number", name="uq_invalid_number"),)

    id: int | None = Field(default=None, primary_key=True)
    account_id: int = Field(foreign_key="accounts.id")
    number: str = Field(max_length=20)
    created_at: datetime = Field(default_factory=utcnow, sa_column=_ts(nullable=False))


class IntakeKind(enum.StrEnum):
    SUBJECT = "subject"  # sms@hub.example.com, numbers in the subject
    NUMBER_ADDRESS = "number_address"  # +33612345678@sms.example.com


class IntakeAddress(SQLModel, table=True):
    """An address (or, for number-in-address intake, a whole domain) that turns mail into SMS."""

    __tablename__ = "intake_addresses"
    __table_args__ = (UniqueConstraint("local_part", "domain", name="uq_intake_address"),)

    id: int | None = Field(default=None, primary_key=True)
    account_id: int = Field(foreign_key="accounts.id", index=True)
    kind: str = Field(default=IntakeKind.SUBJECT.value, max_length=16)
    # Empty for number-in-address intake: every local part of the domain is a number.
    local_part: str = Field(default="", max_length=64)
    domain: str = Field(max_length=255, index=True)
    # Addresses or @domains allowed to send through the organisation's relay; one per line.
    allowed_senders: str = Field(default="")
    # Mail must come through SMTP AUTH (or be from an allowed sender with aligned SPF/DKIM).
    require_auth: bool = False
    # SHA-256 of an optional PIN that must appear in the subject as pin:NNNN.
    pin_hash: str | None = Field(default=None, max_length=64)
    # Send the sender a confirmation e-mail after intake.
    confirm: bool = True
    # Where replies to SMS sent from this address go (empty: the mail's sender).
    reply_mailbox: str = Field(default="", max_length=255)
    sender: str | None = Field(default=None, max_length=16)
    created_at: datetime = Field(default_factory=utcnow, sa_column=_ts(nullable=False))


class MailUser(SQLModel, table=True):
    """An SMTP AUTH login that may send on one account's intake addresses."""

    __tablename__ = "mail_users"

    id: int | None = Field(default=None, primary_key=True)
    account_id: int = Field(foreign_key="accounts.id", index=True)
    username: str = Field(max_length=255, unique=True)
    # scrypt, as "scrypt$n$r$p$salt$hash" (hex).
    password_hash: str = Field(max_length=255)
    disabled: bool = False
    # Part of every console session's signature: raised when the user is disabled, so that
    # enabling it again does not bring back the sessions it had.
    session_epoch: int = Field(default=0, sa_column_kwargs={"server_default": "0"})
    # The console's language this user chose ("fr", "en"); None: the browser's.
    language: str | None = Field(default=None, max_length=16)
    created_at: datetime = Field(default_factory=utcnow, sa_column=_ts(nullable=False))


class InboundMail(SQLModel, table=True):
    """A mail taken in (SMTP or IMAP), stored with its hash in the transaction of its SMS."""

    __tablename__ = "inbound_mails"
    __table_args__ = (UniqueConstraint("account_id", "dedupe_key", name="uq_inbound_mail"),)

    id: int | None = Field(default=None, primary_key=True)
    account_id: int = Field(foreign_key="accounts.id")  # its unique constraint indexes it
    intake_address_id: int | None = Field(default=None, foreign_key="intake_addresses.id")
    # The Message-ID, or the body hash when a mail has none.
    dedupe_key: str = Field(max_length=255)
    message_id: str | None = Field(default=None, max_length=255)
    sha256: str = Field(max_length=64)
    raw: bytes
    source: str = Field(default="smtp", max_length=8)
    mail_from: str = Field(default="", max_length=255)
    rcpt_to: str = Field(default="")
    subject: str = Field(default="", max_length=500)
    batch_id: str | None = Field(default=None, max_length=32, index=True)
    # accepted | rejected, and the summary the sender was told.
    status: str = Field(default="accepted", max_length=16)
    summary: str = Field(default="")
    received_at: datetime = Field(default_factory=utcnow, sa_column=_ts(nullable=False))


class RefusedIntakeMail(SQLModel, table=True):
    """A mail SMTP or IMAP intake refused for good (5xx) on an account's intake address,
    for the console: staff see why their mail sent nothing. Pruned after a while."""

    __tablename__ = "refused_intake_mails"
    __table_args__ = (Index("ix_refused_intake_mails_account", "account_id", "refused_at"),)

    id: int | None = Field(default=None, primary_key=True)
    account_id: int = Field(foreign_key="accounts.id")
    door: str = Field(max_length=8)  # smtp | imap
    # The From (or the envelope sender of a mail without one), as written: maybe forged.
    sender: str = Field(default="", max_length=255)
    subject: str = Field(default="", max_length=500)
    message_id: str | None = Field(default=None, max_length=255)
    # The reply the sender's server got (SMTP), or the mail's Failed folder reason (IMAP).
    reason: str = Field(default="", max_length=500)
    # Where the refusal notice went (a verified sender of an IMAP mail), "" for none.
    notified: str = Field(default="", max_length=255)
    refused_at: datetime = Field(default_factory=utcnow, sa_column=_ts(nullable=False, index=True))


class OutgoingMail(SQLModel, table=True):
    """A mail the hub sends (confirmation, forwarded SMS), queued durably and retried."""

    __tablename__ = "outgoing_mails"
    __table_args__ = (Index("ix_outgoing_mails_due", "status", "due_at"),)

    id: int | None = Field(default=None, primary_key=True)
    account_id: int | None = Field(default=None, foreign_key="accounts.id", index=True)
    kind: str = Field(max_length=32)  # confirmation | reply | alert | summary
    # One mail per event: the same confirmation is never queued twice.
    dedupe_key: str = Field(max_length=255, unique=True)
    recipient: str = Field(max_length=255)
    subject: str = Field(default="", max_length=500)
    raw: bytes
    status: str = Field(default="pending", max_length=16)  # pending | sent | failed
    attempts: int = 0
    last_error: str = Field(default="", max_length=500)
    due_at: datetime = Field(default_factory=utcnow, sa_column=_ts(nullable=False))
    created_at: datetime = Field(default_factory=utcnow, sa_column=_ts(nullable=False))
    sent_at: datetime | None = Field(default=None, sa_column=_ts())


class OptOutEvent(SQLModel, table=True):
    """Every opt-out and opt-in, with its source: the record of consent."""

    __tablename__ = "optout_events"

    id: int | None = Field(default=None, primary_key=True)
    account_id: int = Field(foreign_key="accounts.id", index=True)
    number: str = Field(max_length=20, index=True)
    action: str = Field(max_length=8)  # stop | start
    source: str = Field(max_length=32)  # sms | manual | import | api | link
    note: str = Field(default="", max_length=500)
    created_at: datetime = Field(default_factory=utcnow, sa_column=_ts(nullable=False))


class HubSetting(SQLModel, table=True):
    """Values the hub generates once and shares between instances (e.g. its signing key)."""

    __tablename__ = "hub_settings"

    key: str = Field(primary_key=True, max_length=64)
    value: str


class ConnectorState(SQLModel, table=True):
    """What connectors keep between runs and every instance must see (hub/ports/state.py): part
    ids of long SMPP messages, renewed OAuth tokens, console-entered passwords, pending
    sign-ins. ``value`` is JSON, or a Fernet token when ``secret`` (hub/store/secretbox.py)."""

    __tablename__ = "connector_state"

    namespace: str = Field(primary_key=True, max_length=200)
    key: str = Field(primary_key=True, max_length=200)
    value: str
    secret: bool = False
    # Gone for readers after this time, deleted by prune(); None: kept until deleted.
    expires_at: datetime | None = Field(default=None, sa_column=_ts(index=True))
    updated_at: datetime = Field(default_factory=utcnow, sa_column=_ts(nullable=False))


class RateBucket(SQLModel, table=True):
    """A provider's send rate shared by every dispatcher (hub.sending.rate_limits): the theoretical
    arrival time of its next send, in seconds of the database clock (GCRA)."""

    __tablename__ = "rate_buckets"

    name: str = Field(primary_key=True, max_length=64)
    tat: float = 0.0


class WebhookEndpoint(SQLModel, table=True):
    """An account's URL that receives signed event notifications."""

    __tablename__ = "webhook_endpoints"

    id: int | None = Field(default=None, primary_key=True)
    account_id: int = Field(foreign_key="accounts.id", index=True)
    url: str = Field(max_length=1000)
    # Needed in clear to sign each delivery (HMAC-SHA256); shown once at creation.
    secret: str = Field(max_length=128)
    # Comma-separated event types, or "*".
    events: str = Field(default="*", max_length=500)
    enabled: bool = True
    # True when the hub administrator added it (`smshub webhooks add`), who may aim it at the
    # hub's own network (localhost, private addresses). Console endpoints stay False: the
    # sender refuses their hosts when they resolve to a non-public address (SSRF).
    private_ok: bool = Field(default=False, sa_column_kwargs={"server_default": false()})
    created_at: datetime = Field(default_factory=utcnow, sa_column=_ts(nullable=False))


class WebhookDelivery(SQLModel, table=True):
    """One event for one endpoint: queued durably, retried with backoff, logged."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        UniqueConstraint("endpoint_id", "event_id", name="uq_webhook_event"),
        Index("ix_webhook_deliveries_due", "status", "due_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    endpoint_id: int = Field(foreign_key="webhook_endpoints.id")  # its unique constraint indexes it
    event_id: str = Field(max_length=64)
    event_type: str = Field(max_length=32)
    payload: str
    status: str = Field(default="pending", max_length=16)  # pending | delivered | failed
    attempts: int = 0
    last_status_code: int | None = None
    last_error: str = Field(default="", max_length=500)
    due_at: datetime = Field(default_factory=utcnow, sa_column=_ts(nullable=False))
    created_at: datetime = Field(default_factory=utcnow, sa_column=_ts(nullable=False))
    delivered_at: datetime | None = Field(default=None, sa_column=_ts())


class Calendar(SQLModel, table=True):
    """A connected calendar and its reminder rules."""

    __tablename__ = "calendars"
    __table_args__ = (UniqueConstraint("account_id", "name", name="uq_calendar_name"),)

    id: int | None = Field(default=None, primary_key=True)
    account_id: int = Field(foreign_key="accounts.id")  # its unique constraint indexes it
    name: str = Field(max_length=64)
    # The source type (ics, caldav, google, graph, exchange) and its settings as JSON.
    source_type: str = Field(max_length=32)
    settings: str = Field(default="{}")
    enabled: bool = True
    sync_interval_minutes: float = 15.0
    cursor: str | None = None
    last_sync_at: datetime | None = Field(default=None, sa_column=_ts())
    last_error: str = Field(default="", max_length=1000)
    # Reminder rules: offsets such as "2d@09:00" or "3h", comma-separated.
    offsets: str = Field(default="1d@09:00", max_length=255)
    template: str = Field(default="")
    locale: str = Field(default="fr_FR", max_length=16)
    timezone: str = Field(default="Europe/Paris", max_length=64)
    # No reminder between these local times; one that would fall inside moves earlier.
    quiet_start: str = Field(default="21:00", max_length=5)
    quiet_end: str = Field(default="08:00", max_length=5)
    # An appointment created later than this many minutes before a reminder time gets no
    # reminder for that rule (it would arrive late or in a burst).
    min_lead_minutes: float = 30.0
    # Send an "appointment changed" SMS when an event moves after its reminder went out.
    notify_changes: bool = False
    sender: str | None = Field(default=None, max_length=16)
    # Receptionist's mailbox for confirmations and cancellations answered by SMS.
    notify_mailbox: str = Field(default="", max_length=255)
    # Days ahead that are synced.
    window_days: int = 60
    # Fingerprint of the settings the reminders were last planned with (hub.reminders.
    # reconcile): while it holds, an unchanged appointment is not planned again.
    planned_with: str = Field(default="", max_length=64, sa_column_kwargs={"server_default": ""})
    created_at: datetime = Field(default_factory=utcnow, sa_column=_ts(nullable=False))


class CalendarEventRow(SQLModel, table=True):
    """One occurrence of an appointment as last seen in its calendar."""

    __tablename__ = "calendar_events"
    __table_args__ = (
        UniqueConstraint("calendar_id", "uid", "occurrence", name="uq_calendar_event"),
        # Partial (migration 0013): only events with an answer to write back; the answer
        # writer's claim says answer_due_at <= now, which implies IS NOT NULL.
        Index(
            "ix_calendar_events_answer_due_at",
            "answer_due_at",
            sqlite_where=sql_text("answer_due_at IS NOT NULL"),
            postgresql_where=sql_text("answer_due_at IS NOT NULL"),
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    calendar_id: int = Field(foreign_key="calendars.id")  # its unique constraint indexes it
    uid: str = Field(max_length=255)
    occurrence: str = Field(default="", max_length=64)
    start: datetime = Field(sa_column=_ts(nullable=False, index=True))
    end: datetime | None = Field(default=None, sa_column=_ts())
    timezone: str = Field(default="UTC", max_length=64)
    all_day: bool = False
    title: str = Field(default="", max_length=500)
    location: str = Field(default="", max_length=500)
    description: str = Field(default="")
    attendees: str = Field(default="[]")
    status: str = Field(default="confirmed", max_length=16)
    etag: str = Field(default="", max_length=255)
    # Who gets the reminder, and why not when nobody can.
    phone: str | None = Field(default=None, max_length=20)
    person: str = Field(default="", max_length=255)
    # Where PERSON came from: attendee | contact | description, "" when no name was found.
    person_source: str = Field(default="", max_length=16, sa_column_kwargs={"server_default": ""})
    problem: str = Field(default="", max_length=255)
    # confirmed | cancelled by the patient's answer, and whether the calendar was told.
    answer: str = Field(default="", max_length=16)
    answer_written: bool = False
    # When the answer came, and when writing it to the calendar is (next) due: set by the
    # answer, pushed forward by each claim and failed try, cleared once written or given up.
    answer_at: datetime | None = Field(default=None, sa_column=_ts())
    answer_due_at: datetime | None = Field(default=None, sa_column=_ts())  # partial index
    answer_attempts: int = 0
    answer_error: str = Field(default="", max_length=500)
    deleted: bool = False
    updated_at: datetime = Field(default_factory=utcnow, sa_column=_ts(nullable=False))


class Reminder(SQLModel, table=True):
    """A reminder SMS planned for an occurrence by one rule (the SMS itself is a Message)."""

    __tablename__ = "reminders"

    id: int | None = Field(default=None, primary_key=True)
    event_id: int = Field(foreign_key="calendar_events.id", index=True)
    rule: str = Field(max_length=32)
    message_id: str | None = Field(default=None, max_length=32, index=True)
    # The appointment start this reminder was planned for (a move plans a new one).
    for_start: datetime = Field(sa_column=_ts(nullable=False))
    send_at: datetime = Field(sa_column=_ts(nullable=False))
    # scheduled | sent | cancelled | skipped
    status: str = Field(default="scheduled", max_length=16)
    note: str = Field(default="", max_length=255)
    created_at: datetime = Field(default_factory=utcnow, sa_column=_ts(nullable=False))


class ContactList(SQLModel, table=True):
    """A named list of an account's contacts (``list:NAME`` in a mail subject)."""

    __tablename__ = "contact_lists"
    __table_args__ = (UniqueConstraint("account_id", "name", name="uq_contact_list"),)

    id: int | None = Field(default=None, primary_key=True)
    account_id: int = Field(foreign_key="accounts.id")  # its unique constraint indexes it
    name: str = Field(max_length=64)
    created_at: datetime = Field(default_factory=utcnow, sa_column=_ts(nullable=False))


class Contact(SQLModel, table=True):
    """One number on a list, with its merge fields (first_name, ...) as JSON."""

    __tablename__ = "contacts"
    __table_args__ = (UniqueConstraint("list_id", "number", name="uq_contact_number"),)

    id: int | None = Field(default=None, primary_key=True)
    list_id: int = Field(foreign_key="contact_lists.id")  # its unique constraint indexes it
    number: str = Field(max_length=20)
    fields: str = Field(default="{}")
    created_at: datetime = Field(default_factory=utcnow, sa_column=_ts(nullable=False))


class MessageTemplate(SQLModel, table=True):
    """A saved SMS text with merge fields."""

    __tablename__ = "message_templates"
    __table_args__ = (UniqueConstraint("account_id", "name", name="uq_template_name"),)

    id: int | None = Field(default=None, primary_key=True)
    account_id: int = Field(foreign_key="accounts.id")  # its unique constraint indexes it
    name: str = Field(max_length=64)
    text: str
    created_at: datetime = Field(default_factory=utcnow, sa_column=_ts(nullable=False))


class Campaign(SQLModel, table=True):
    """A send to lists and numbers, now or scheduled; cancellable until it starts."""

    __tablename__ = "campaigns"

    id: int | None = Field(default=None, primary_key=True)
    account_id: int = Field(foreign_key="accounts.id", index=True)
    name: str = Field(max_length=128)
    text: str
    type: str = Field(default="marketing", max_length=16)
    sender: str | None = Field(default=None, max_length=16)
    send_at: datetime | None = Field(default=None, sa_column=_ts())
    # scheduled | sending | sent | cancelled
    status: str = Field(default="scheduled", max_length=16)
    recipients: int = 0
    credits: int = 0
    created_at: datetime = Field(default_factory=utcnow, sa_column=_ts(nullable=False))
    # Whether its URLs were replaced by per-recipient short links (its report's click rate).
    track_links: bool = False


class HostedFile(SQLModel, table=True):
    """A PNG/GIF/JPEG/PDF served by the hub behind a short link."""

    __tablename__ = "hosted_files"

    id: int | None = Field(default=None, primary_key=True)
    account_id: int = Field(foreign_key="accounts.id", index=True)
    name: str = Field(max_length=255)
    content_type: str = Field(max_length=64)
    size: int
    sha256: str = Field(max_length=64)
    data: bytes
    created_at: datetime = Field(default_factory=utcnow, sa_column=_ts(nullable=False))


class ShortLink(SQLModel, table=True):
    """A short URL on the hub that redirects (or serves a file) and counts clicks."""

    __tablename__ = "short_links"

    id: int | None = Field(default=None, primary_key=True)
    account_id: int = Field(foreign_key="accounts.id", index=True)
    code: str = Field(max_length=16, unique=True)
    target_url: str = Field(default="", max_length=2000)
    file_id: int | None = Field(default=None, foreign_key="hosted_files.id")
    # Per recipient when a message's links are personalised (who clicked).
    message_id: str | None = Field(default=None, max_length=32, index=True)
    number: str | None = Field(default=None, max_length=20)
    created_at: datetime = Field(default_factory=utcnow, sa_column=_ts(nullable=False))


class UnsubscribeLink(SQLModel, table=True):
    """A recipient's web unsubscribe link (``PUBLIC_URL/u/CODE``) where STOP replies cannot
    reach the hub (Switzerland, Belgium): confirming it blacklists NUMBER for the account."""

    __tablename__ = "unsubscribe_links"

    id: int | None = Field(default=None, primary_key=True)
    account_id: int = Field(foreign_key="accounts.id", index=True)
    code: str = Field(max_length=16, unique=True)
    number: str = Field(max_length=20)
    message_id: str | None = Field(default=None, max_length=32)
    campaign_id: int | None = Field(default=None)
    created_at: datetime = Field(default_factory=utcnow, sa_column=_ts(nullable=False))
    used_at: datetime | None = Field(default=None, sa_column=_ts())


class LinkClick(SQLModel, table=True):
    __tablename__ = "link_clicks"

    id: int | None = Field(default=None, primary_key=True)
    link_id: int = Field(foreign_key="short_links.id", index=True)
    number: str | None = Field(default=None, max_length=20)
    user_agent: str = Field(default="", max_length=500)
    clicked_at: datetime = Field(default_factory=utcnow, sa_column=_ts(nullable=False))
    # The User-Agent as ua-parser reads it (hub.campaigns.clicks): what the reports group by.
    device_family: str = Field(default="", max_length=64)
    os_family: str = Field(default="", max_length=64)
    browser_family: str = Field(default="", max_length=64)
    # A link-preview fetcher or crawler (ua-parser's device "Spider"), not a person.
    bot: bool = False


class RateCounter(SQLModel, table=True):
    """One windowed counter of hub/store/limits.py (failed logins, mails per sender, short-link
    hits per client), kept in SQL so that a limit holds across every instance."""

    __tablename__ = "rate_counters"

    key: str = Field(primary_key=True, max_length=200)
    # The fixed window now counted (epoch seconds // window length), its count and the
    # count of the window before it (weighted into a sliding estimate).
    bucket: int = Field(sa_column=Column(BigInteger, nullable=False))
    count: int = 0
    previous: int = 0
    # Epoch seconds (UTC) of the last counted event, and after which the row counts nothing
    # (pruned). Plain numbers: the limits do arithmetic on them in SQL on both databases.
    last_at: float = 0.0
    expires_at: float = Field(index=True)


class IdempotencyKey(SQLModel, table=True):
    """An API Idempotency-Key, the fingerprint of the request that first used it and the
    answer it got: the same request again gets the same answer, another request a 422."""

    __tablename__ = "api_idempotency_keys"
    __table_args__ = (UniqueConstraint("account_id", "key", name="uq_api_idempotency_key"),)

    id: int | None = Field(default=None, primary_key=True)
    account_id: int = Field(foreign_key="accounts.id")
    key: str = Field(max_length=255)
    # sha256 of the canonical request (method, path, account, normalized JSON body).
    fingerprint: str = Field(max_length=64)
    # The first answer (JSON), None while the first request is being handled.
    status_code: int | None = None
    response: str | None = None
    created_at: datetime = Field(default_factory=utcnow, sa_column=_ts(nullable=False))


class RevokedSession(SQLModel, table=True):
    """A console session ended by logout, kept until its cookie would have expired anyway
    (then pruned): every instance refuses the old cookie."""

    __tablename__ = "console_revoked_sessions"

    # sha256 of the session's own random token (its CSRF token), never the token itself.
    id: str = Field(primary_key=True, max_length=64)
    expires_at: datetime = Field(sa_column=_ts(nullable=False, index=True))
