"""The SMS provider protocol and the normalized events every provider's callbacks become."""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict

from hub.ports.state import StateStore

if TYPE_CHECKING:
    import httpx

    from hub.sending.callbacks import CallbackView


class ProviderSettings(BaseModel):
    """Base of each provider's config section (``[providers.NAME]``); unknown keys are errors."""

    model_config = ConfigDict(extra="forbid")

    type: str
    # Messages per second this provider accepts from us; 0 means no limit.
    rate_per_second: float = 0.0
    # Concurrent requests in flight to this provider.
    concurrency: int = 16
    # Country calling-code prefixes routed through this provider first (e.g. ["+41"]).
    prefixes: list[str] = []


@dataclass(frozen=True)
class OutgoingSms:
    """One SMS as the dispatcher hands it to a provider."""

    message_id: str
    to: str
    text: str
    sender: str | None
    encoding: str  # "GSM-7" or "UCS-2"
    segments: int
    # Stable per send attempt: a provider that deduplicates uses it as its key.
    dedupe_key: str = ""
    type: str = "alert"  # or "marketing" (some providers route or price them apart)


class SendOutcome(enum.StrEnum):
    ACCEPTED = "accepted"
    TRANSIENT = "transient"  # try again later (or through the next provider)
    PERMANENT = "permanent"  # the provider refused this message for good
    # The request may have reached the provider (e.g. a read timeout): sending again could
    # double it, so the message becomes `unknown` unless the provider deduplicates.
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class SendResult:
    outcome: SendOutcome
    provider_message_id: str | None = None
    reason: DeliveryReason | None = None  # why, for permanent failures
    detail: str = ""


class DeliveryState(enum.StrEnum):
    DELIVERED = "delivered"
    UNDELIVERED = "undelivered"
    PENDING = "pending"  # intermediate report (buffered, accepted by SMSC)


class DeliveryReason(enum.StrEnum):
    INVALID_NUMBER = "invalid_number"
    NETWORK_ERROR = "network_error"
    EXPIRED = "expired"
    # The provider keeps its own STOP list and refused the number: final, like OTHER, but
    # the message (and its webhook) says why.
    OPTED_OUT = "opted_out"
    OTHER = "other"


@dataclass(frozen=True)
class DeliveryReport:
    """A normalized delivery report."""

    provider: str
    event_key: str  # unique per provider; the same report twice has the same key
    state: DeliveryState
    message_id: str | None = None  # our id, when the provider carries it back
    provider_message_id: str | None = None
    reason: DeliveryReason | None = None
    detail: str = ""
    occurred_at: datetime | None = None
    raw: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class InboundSms:
    """A normalized inbound (MO) SMS."""

    provider: str
    event_key: str
    sender: str  # E.164 when numeric, else as received (short code, alphanumeric)
    recipient: str  # the number it was sent to (ours)
    text: str
    received_at: datetime | None = None
    raw: Mapping[str, Any] = field(default_factory=dict)


ProviderEvent = DeliveryReport | InboundSms


@dataclass
class ProviderContext:
    """What the composition root gives each provider."""

    name: str
    public_url: str  # base URL where the hub's callback routes are reachable
    data_dir: Path
    # Country for numbers a provider reports without their country code.
    default_region: str = "FR"
    # Posts to the hub's own HTTP routes in-process (simulator callbacks use it).
    hub_client: httpx.AsyncClient | None = None
    # Stores normalized events; for providers that push reports over their own connection
    # (SMPP deliver_sm) instead of HTTP callbacks. Acknowledge only after it returns.
    emit: Callable[[Sequence[ProviderEvent]], Awaitable[None]] | None = None
    # What the provider must remember that another instance may need (SMPP part ids of
    # long messages): the hub's state store (hub/ports/state.py); None: this process only.
    store: StateStore | None = None


@runtime_checkable
class SmsProvider(Protocol):
    """What every SMS connector implements."""

    settings_model: ClassVar[type[ProviderSettings]]
    settings: ProviderSettings
    name: str
    # True when sending the same message_id twice reaches the phone once; the dispatcher then
    # re-sends messages a crashed process left in `submitting` instead of marking them unknown.
    deduplicates: bool

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def send(self, sms: OutgoingSms) -> SendResult: ...

    def callbacks(self) -> Mapping[str, CallbackView]:
        """Callback views by route suffix, mounted at ``/callbacks/{name}/{suffix}``."""
        ...
