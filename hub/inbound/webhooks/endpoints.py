"""Webhook endpoints: add, list, enable or disable and remove an account's URLs, read their
delivery log, and find which endpoints an account's events go to (cached per transaction:
an event of an account also goes to its parent's, grand-parent's, ... endpoints).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass

from sqlmodel import Session, col, delete, select

from hub.errors import InvalidInput, NotFound
from hub.inbound.webhooks.addresses import validate_url
from hub.inbound.webhooks.payloads import EVENT_TYPES
from hub.inbound.webhooks.signing import new_secret
from hub.sending.accounts import ancestors, get_account
from hub.store.models import Account, WebhookDelivery, WebhookEndpoint

_TARGETS_CACHE = "smshub.webhook_targets"


def validate_events(events: Iterable[str]) -> list[str]:
    """The event types, checked; ["*"] when empty or when "*" is among them."""
    chosen: list[str] = []
    for raw in events:
        for name in (p.strip() for p in raw.split(",")):
            if not name:
                continue
            if name == "*":
                return ["*"]
            if name not in EVENT_TYPES:
                known = ", ".join(sorted(EVENT_TYPES))
                raise InvalidInput(f"unknown webhook event {name!r}; use * or one of: {known}")
            if name not in chosen:
                chosen.append(name)
    return chosen or ["*"]


def _forget_targets(session: Session) -> None:
    session.info.pop(_TARGETS_CACHE, None)


def add_endpoint(
    session: Session,
    account: str | int,
    url: str,
    events: Sequence[str] = ("*",),
    *,
    private_ok: bool = False,
) -> tuple[WebhookEndpoint, str]:
    """Register URL for ACCOUNT's EVENTS; returns the endpoint and its secret (show it once).

    PRIVATE_OK (the hub administrator's CLI only) lets the URL reach the hub's own network;
    otherwise the sender refuses a host that is or resolves to a non-public address
    (the outbound guard, ``hub.outbound``).
    """
    acc = get_account(session, account)
    assert acc.id is not None
    secret = new_secret()
    endpoint = WebhookEndpoint(
        account_id=acc.id,
        url=validate_url(url),
        secret=secret,
        events=",".join(validate_events(events)),
        private_ok=private_ok,
    )
    session.add(endpoint)
    session.flush()
    _forget_targets(session)
    return endpoint, secret


def get_endpoint(session: Session, endpoint_id: int) -> WebhookEndpoint:
    endpoint = session.get(WebhookEndpoint, endpoint_id)
    if endpoint is None:
        raise NotFound(
            f"no webhook endpoint with id {endpoint_id} (list them with `smshub webhooks list`)"
        )
    return endpoint


def list_endpoints(
    session: Session,
    account: str | int | None = None,
    *,
    account_ids: Collection[int] | None = None,
    after: int = 0,
    limit: int | None = None,
) -> list[WebhookEndpoint]:
    """Endpoints by id: of ACCOUNT, or of ACCOUNT_IDS, else all; ids above AFTER, at most
    LIMIT (a page of the API)."""
    query = select(WebhookEndpoint).order_by(col(WebhookEndpoint.id))
    if account is not None:
        query = query.where(WebhookEndpoint.account_id == get_account(session, account).id)
    if account_ids is not None:
        query = query.where(col(WebhookEndpoint.account_id).in_(list(account_ids)))
    if after:
        query = query.where(col(WebhookEndpoint.id) > after)
    if limit is not None:
        query = query.limit(limit)
    return list(session.exec(query).all())


def owner_names(session: Session, endpoints: Iterable[WebhookEndpoint]) -> dict[int, str]:
    """The name of each account owning one of ENDPOINTS, by account id."""
    ids = {e.account_id for e in endpoints}
    if not ids:
        return {}
    rows = session.exec(select(Account).where(col(Account.id).in_(ids))).all()
    return {a.id: a.name for a in rows if a.id is not None}


def remove_endpoint(session: Session, endpoint_id: int) -> WebhookEndpoint:
    """Delete an endpoint with its queued deliveries and delivery log."""
    endpoint = get_endpoint(session, endpoint_id)
    session.execute(delete(WebhookDelivery).where(col(WebhookDelivery.endpoint_id) == endpoint_id))
    session.delete(endpoint)
    session.flush()
    _forget_targets(session)
    return endpoint


def disable_endpoint(session: Session, endpoint_id: int, disabled: bool = True) -> WebhookEndpoint:
    """Disable (or enable) an endpoint: a disabled one gets no new events, and what it has
    queued waits until it is enabled again."""
    endpoint = get_endpoint(session, endpoint_id)
    endpoint.enabled = not disabled
    session.add(endpoint)
    session.flush()
    _forget_targets(session)
    return endpoint


def delivery_log(
    session: Session, endpoint_id: int | None = None, limit: int = 50
) -> list[WebhookDelivery]:
    """The latest deliveries, newest first."""
    query = select(WebhookDelivery).order_by(col(WebhookDelivery.id).desc()).limit(limit)
    if endpoint_id is not None:
        query = query.where(WebhookDelivery.endpoint_id == endpoint_id)
    return list(session.exec(query).all())


def subscribed(endpoint: WebhookEndpoint, event_type: str) -> bool:
    names = {n.strip() for n in endpoint.events.split(",")}
    return "*" in names or event_type in names


@dataclass
class _Targets:
    """Per-transaction cache: whether any endpoint exists, and each account's targets."""

    any_enabled: bool
    by_account: dict[int, tuple[Account | None, list[WebhookEndpoint]]]


def _cache(session: Session) -> _Targets:
    cache = session.info.get(_TARGETS_CACHE)
    if not isinstance(cache, _Targets):
        # Most hubs have no endpoint at all: one cheap query spares every lookup after it.
        found = session.exec(select(WebhookEndpoint.id).where(col(WebhookEndpoint.enabled))).first()
        cache = _Targets(any_enabled=found is not None, by_account={})
        session.info[_TARGETS_CACHE] = cache
    return cache


def has_endpoints(session: Session) -> bool:
    """True if any enabled endpoint exists (cached for the transaction)."""
    return _cache(session).any_enabled


def targets(session: Session, account_id: int) -> tuple[Account | None, list[WebhookEndpoint]]:
    """The account and the enabled endpoints of it and its ancestors (cached)."""
    cache = _cache(session)
    if not cache.any_enabled:
        return None, []
    if account_id not in cache.by_account:
        account = session.get(Account, account_id)
        endpoints: list[WebhookEndpoint] = []
        if account is not None:
            scope = [a.id for a in ancestors(session, account)]
            endpoints = list(
                session.exec(
                    select(WebhookEndpoint)
                    .where(
                        col(WebhookEndpoint.account_id).in_(scope),
                        col(WebhookEndpoint.enabled),
                    )
                    .order_by(col(WebhookEndpoint.id))
                ).all()
            )
        cache.by_account[account_id] = (account, endpoints)
    return cache.by_account[account_id]
