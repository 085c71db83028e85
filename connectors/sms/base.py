"""The shape every SMS provider of this package shares.

On the model of django-anymail's ``BaseEmailBackend``: the base owns what every provider does
the same way (settings, context and name; ``send()``, which logs every message the provider
did not take), and a provider fills in ``attempt()`` (one try at handing an SMS over) and,
when it has them, ``start()``, ``close()`` and ``callbacks()``. Providers that speak HTTP
start from :class:`connectors.sms.http_base.HttpSmsProvider`, which fills in ``attempt()``
and the transport-error policy once for all of them.
"""

from __future__ import annotations

import abc
import logging
from collections.abc import Mapping
from typing import ClassVar, Generic, TypeVar

from hub.ports.sms import OutgoingSms, ProviderContext, ProviderSettings, SendOutcome, SendResult
from hub.sending.callbacks import CallbackView

SettingsT = TypeVar("SettingsT", bound=ProviderSettings)


class SmsProviderBase(abc.ABC, Generic[SettingsT]):
    """Implements hub.ports.sms.SmsProvider but for ``attempt()``."""

    settings_model: ClassVar[type[ProviderSettings]]
    #: The provider as its users know it ("Twilio"), in details and logs.
    label: ClassVar[str] = "the provider"
    #: Where this provider logs.
    log: ClassVar[logging.Logger] = logging.getLogger("smshub.sms")
    #: True when sending the same message twice reaches the phone once (the provider keys on
    #: our id): the dispatcher then re-sends what a crash or a lost answer left in doubt,
    #: instead of marking it unknown.
    deduplicates: bool = False

    def __init__(self, settings: SettingsT, ctx: ProviderContext) -> None:
        self.settings = settings
        self.ctx = ctx
        self.name = ctx.name
        # The config section, as error messages name it.
        self.where = f"providers.{ctx.name}"

    async def start(self) -> None:
        """Open what sending needs; nothing by default."""

    async def close(self) -> None:
        """Release what start() opened; nothing by default."""

    def callbacks(self) -> Mapping[str, CallbackView]:
        """Callback views by route suffix; none by default."""
        return {}

    async def send(self, sms: OutgoingSms) -> SendResult:
        result = await self.attempt(sms)
        if result.outcome != SendOutcome.ACCEPTED:
            self.log.warning(
                "%s did not take message %s (%s): %s",
                self.label,
                sms.message_id,
                result.outcome.value,
                result.detail,
            )
        return result

    @abc.abstractmethod
    async def attempt(self, sms: OutgoingSms) -> SendResult:
        """One try at handing SMS over to the provider."""
