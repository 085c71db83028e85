"""Outgoing webhooks: signed event notifications to an account's URLs, queued durably. The
package owns them end to end, one job a module: ``signing`` (secrets, the HMAC header and its
check), ``addresses`` (where an endpoint may point), ``endpoints`` (adding, listing, disabling
and removing them, and which ones an account's events reach), ``payloads`` (the event types
and the JSON bodies), ``queue`` (an event becomes one delivery row per endpoint, in the
caller's transaction) and ``delivery`` (the ``WebhookSender`` worker that posts them signed,
through the outbound guard, and retries). It may import the sending core's accounts, the
store, the outbound guard and ``hub.core``; the names below are its public surface.

An event of an account also goes to the endpoints of its parent, grand-parent, ... up to the
main account: whoever runs sub-accounts usually wants their events in one place. It never
goes to a sibling's or a child's endpoints. The body's ``account`` names the account the
event is about.
"""

from hub.inbound.webhooks.addresses import check_public_url, check_resolves_public, validate_url
from hub.inbound.webhooks.delivery import (
    CLAIM_LEASE,
    FIRST_RETRY,
    GIVE_UP_AFTER,
    MAX_RETRY,
    REQUEST_TIMEOUT,
    WebhookSender,
    retry_delay,
)
from hub.inbound.webhooks.endpoints import (
    add_endpoint,
    delivery_log,
    disable_endpoint,
    get_endpoint,
    has_endpoints,
    list_endpoints,
    owner_names,
    remove_endpoint,
    subscribed,
    validate_events,
)
from hub.inbound.webhooks.payloads import (
    EVENT_TYPES,
    FAILED_STATUSES,
    INBOUND_RECEIVED,
    LINK_CLICKED,
    MESSAGE_DELIVERED,
    MESSAGE_FAILED,
    OPTOUT_CREATED,
    PING,
    build_body,
    message_data,
)
from hub.inbound.webhooks.queue import (
    inbound_event,
    message_event,
    message_events,
    optout_event,
    queue_event,
    queue_ping,
)
from hub.inbound.webhooks.signing import (
    ID_HEADER,
    SECRET_PREFIX,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    TYPE_HEADER,
    new_secret,
    sign,
    signature_header,
    verify_signature,
)

__all__ = [
    "CLAIM_LEASE",
    "EVENT_TYPES",
    "FAILED_STATUSES",
    "FIRST_RETRY",
    "GIVE_UP_AFTER",
    "ID_HEADER",
    "INBOUND_RECEIVED",
    "LINK_CLICKED",
    "MAX_RETRY",
    "MESSAGE_DELIVERED",
    "MESSAGE_FAILED",
    "OPTOUT_CREATED",
    "PING",
    "REQUEST_TIMEOUT",
    "SECRET_PREFIX",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "TYPE_HEADER",
    "WebhookSender",
    "add_endpoint",
    "build_body",
    "check_public_url",
    "check_resolves_public",
    "delivery_log",
    "disable_endpoint",
    "get_endpoint",
    "has_endpoints",
    "inbound_event",
    "list_endpoints",
    "owner_names",
    "message_data",
    "message_event",
    "message_events",
    "new_secret",
    "optout_event",
    "queue_event",
    "queue_ping",
    "remove_endpoint",
    "retry_delay",
    "sign",
    "signature_header",
    "subscribed",
    "validate_events",
    "validate_url",
    "verify_signature",
]
