"""Finding connectors by name: the hub never imports connectors/, it looks them up here.

Connectors register through the ``smshub.sms_providers`` entry-point group in
pyproject.toml, so a new provider is one module plus one line there.
"""

from __future__ import annotations

import asyncio
from functools import cache
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from pydantic import BaseModel, ValidationError

from hub.core.config import Config, config_error, read_secret
from hub.errors import ConfigError
from hub.mail.oauth import MAIL_OUT, MailboxAccess, intake_key
from hub.mail.outbox import build_message
from hub.ports.calendar import CalendarSource, SourceContext, StateFile
from hub.ports.mail import MailIntake, MailSender, MailSource, OnAccepted
from hub.ports.sms import ProviderContext, SmsProvider
from hub.ports.state import StateStore

SMS_GROUP = "smshub.sms_providers"
MAIL_GROUP = "smshub.mail_senders"


def sms_provider_types() -> dict[str, Any]:
    """Provider classes by type name."""
    return {ep.name: ep for ep in entry_points(group=SMS_GROUP)}


def build_sms_provider(name: str, section: dict[str, Any], ctx: ProviderContext) -> SmsProvider:
    """Validate [providers.NAME] against its connector and build the provider."""
    types = sms_provider_types()
    kind = section.get("type")
    if kind not in types:
        known = ", ".join(sorted(types)) or "none installed"
        raise ConfigError(
            f"'providers.{name}.type': unknown provider type {kind!r} (known: {known})"
        )
    cls = types[kind].load()
    try:
        settings = cls.settings_model.model_validate(section)
    except ValidationError as exc:
        raise config_error(exc, name=lambda key: f"providers.{name}.{key}", sep="; ") from None
    provider: SmsProvider = cls(settings, ctx)
    return provider


def mail_out_access(config: Config, store: StateStore | None) -> MailboxAccess | None:
    """[mail_out]'s sign-in and activity record (None without a state store)."""
    out = config.mail_out
    auth = out.imap_auth if out.method == "imap" else out.auth
    if out.transport != "smtp":
        auth = "xoauth2"  # a mail API is only reached by OAuth
    if store is None:
        if auth == "xoauth2":
            raise ConfigError("'mail_out': auth = \"xoauth2\" needs the hub's database")
        return None
    return MailboxAccess(config, store, MAIL_OUT, auth=auth, provider=out.oauth_provider or None)


def build_mail_sender(config: Config, store: StateStore | None = None) -> MailSender | None:
    """The sender of the hub's own mail ([mail_out]), or None when delivery is off. With
    STORE, the mailbox's OAuth tokens and activity are kept there."""
    out = config.mail_out
    if not out.enabled:
        return None
    found = {ep.name: ep for ep in entry_points(group=MAIL_GROUP)}
    # The mail protocols by method; a provider's mail API by transport (method then says
    # send or store).
    name = out.method if out.transport == "smtp" else out.transport
    if name not in found:
        raise ConfigError(f"no {name!r} mail sender is installed (reinstall smshub)")
    access = mail_out_access(config, store)
    key = "imap_password" if out.method == "imap" else "password"
    password = None if access is not None and access.oauth else read_secret(out, key, "mail_out")
    cls = found[name].load()
    sender: MailSender = cls(out, password) if access is None else cls(out, password, access=access)
    return sender


CALENDAR_GROUP = "smshub.calendar_sources"


@cache
def _calendar_entry_points() -> dict[str, EntryPoint]:
    # Read once per process: listing entry points reads every installed package's metadata
    # (~70 ms here), and each calendar sync needs its source's class twice.
    return {ep.name: ep for ep in entry_points(group=CALENDAR_GROUP)}


def calendar_source_modules() -> list[str]:
    """The modules of the installed calendar sources (imported ahead by sync workers)."""
    return sorted({ep.module for ep in _calendar_entry_points().values()})


def calendar_source_types() -> list[str]:
    """Installed calendar source types."""
    return sorted(_calendar_entry_points())


def _calendar_class(kind: str, where: str) -> Any:
    found = _calendar_entry_points()
    if kind not in found:
        known = ", ".join(sorted(found)) or "none installed"
        raise ConfigError(f"{where}: unknown calendar type {kind!r} (known: {known})")
    return found[kind].load()


def calendar_settings(kind: str, settings: dict[str, Any], where: str) -> BaseModel:
    """A calendar's settings checked by its connector; ConfigError naming every bad key."""
    cls = _calendar_class(kind, where)
    try:
        parsed: BaseModel = cls.settings_model.model_validate({"type": kind, **settings})
    except ValidationError as exc:
        error = config_error(exc, unknown="unknown setting", sep="; ")
        raise ConfigError(f"{where}: {error}") from None
    return parsed


def build_calendar_source(
    kind: str, settings: dict[str, Any], ctx: SourceContext, where: str
) -> CalendarSource:
    """Validate a calendar's settings against its connector and build the source."""
    parsed = calendar_settings(kind, settings, where)
    source: CalendarSource = _calendar_class(kind, where)(parsed, ctx)
    return source


def calendar_state_files(
    kind: str, settings: dict[str, Any], ctx: SourceContext, where: str
) -> list[StateFile]:
    """The files the KIND source of a calendar with SETTINGS keeps in ``ctx.data_dir``;
    ConfigError when the settings are not valid."""
    cls = _calendar_class(kind, where)
    listed = getattr(cls, "state_files", None)  # a connector from before the method
    if listed is None:
        return []
    files: list[StateFile] = listed(calendar_settings(kind, settings, where), ctx)
    return files


MAIL_SOURCE_GROUP = "smshub.mail_sources"


def build_mail_sources(
    config: Config,
    policy: MailIntake,
    on_accepted: OnAccepted | None = None,
    store: StateStore | None = None,
) -> list[MailSource]:
    """One (not yet started) source per [[imap]] table; errors name 'imap[N].key'. With
    STORE, each mailbox's OAuth tokens and activity are kept there."""
    if not config.imap:
        return []
    found = {ep.name: ep for ep in entry_points(group=MAIL_SOURCE_GROUP)}
    sources: list[MailSource] = []
    for index, table in enumerate(config.imap):
        where = f"imap[{index}]"
        settings, cls = _source_class(found, table, where)
        access = None
        if store is not None:
            access = MailboxAccess(
                config,
                store,
                intake_key(settings.label),
                auth=settings.auth,
                provider=settings.oauth_provider,
            )
        elif settings.auth == "xoauth2":
            raise ConfigError(f"'{where}': auth = \"xoauth2\" needs the hub's database")
        if settings.auth == "xoauth2":
            password = ""
        else:
            password = read_secret(settings, "password", where) or ""
            if not password:
                raise ConfigError(f"'{where}': the mailbox password is empty")
        sources.append(cls(settings, policy, password, on_accepted=on_accepted, access=access))
    return sources


def _source_class(found: dict[str, Any], table: dict[str, Any], where: str) -> tuple[Any, Any]:
    """An [[imap]] table's settings (one model for every transport) and its source class."""
    if "imap" not in found:
        raise ConfigError("no IMAP mail source is installed (reinstall smshub)")
    settings = found["imap"].load().settings_model.from_config(table, where)
    if settings.transport not in found:
        raise ConfigError(
            f"'{where}.transport': no {settings.transport!r} mail source is installed "
            "(reinstall smshub)"
        )
    return settings, found[settings.transport].load()


def _intake_source(config: Config, store: StateStore, key: str) -> Any:
    """The (not started) source of the [[imap]] mailbox KEY, without an intake policy."""
    found = {ep.name: ep for ep in entry_points(group=MAIL_SOURCE_GROUP)}
    for index, table in enumerate(config.imap):
        where = f"imap[{index}]"
        settings, cls = _source_class(found, table, where)
        if intake_key(settings.label) != key:
            continue
        access = MailboxAccess(
            config, store, key, auth=settings.auth, provider=settings.oauth_provider
        )
        password = "" if access.oauth else read_secret(settings, "password", where) or ""
        return cls(settings, None, password, access=access)
    raise ConfigError(f"no [[imap]] mailbox {key!r} in the config")


def try_mailbox(config: Config, store: StateStore, key: str) -> str:
    """Try mailbox KEY as the hub uses it, in a sentence: an intake mailbox is signed in to
    and its folder read (nothing changed); [mail_out] sends a test mail to its own address
    (through the relay, or APPENDed to the answers folder). Blocking: raises what the
    transport raises (HubError or OSError), its message saying what went wrong."""
    if key != MAIL_OUT:
        source = _intake_source(config, store, key)
        try:
            return str(source.check())
        finally:
            source.discard()
    out = config.mail_out
    sender = build_mail_sender(config, store)
    if sender is None:
        raise ConfigError("[mail_out] sends no mail: set its host (or imap_host)")
    to = (out.imap_username if out.method == "imap" else out.username) or out.from_address
    message = build_message(
        out.from_address,
        to,
        "smshub test mail",
        "This mail was sent by smshub to test its mailbox settings. Nothing else to do.",
    )
    asyncio.run(sender.send(message))
    where = f"appended to {out.imap_folder!r} of" if out.method == "imap" else "sent to"
    return f"a test mail was {where} {to}"
