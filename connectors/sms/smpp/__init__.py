"""The SMPP 3.4 provider (``connectors.sms.smpp:SmppProvider``, the entry point), one job per
module: ``pdu`` (framing and the PDUs an ESME needs), ``text`` (GSM 03.38 with the hub's
tables, UCS-2, the concatenation UDH) and ``receipts`` (receipt texts, dates, error codes),
all three pure; ``settings`` (the config section and what submit statuses mean); ``link``
(one TCP connection); ``journal`` and ``shared_state`` (which message each submitted part
belongs to, and the parts of long inbound SMS: the JSONL file of earlier builds, and the hub's
state store); ``sending`` (building submit_sm); ``receiving`` (deliver_sm as the hub's
events); ``provider`` (the supervised bind that sends and receives). The modules import one
another downward (pdu first, provider last), the shared provider base (``connectors.sms.base``)
and the hub's ports, phone numbers, segments and state store.
"""

from connectors.sms.smpp.journal import PartRef, SmppState
from connectors.sms.smpp.link import Link, LinkLost, NotBound
from connectors.sms.smpp.provider import SmppProvider
from connectors.sms.smpp.settings import SmppSettings, status_outcome

__all__ = [
    "Link",
    "LinkLost",
    "NotBound",
    "PartRef",
    "SmppProvider",
    "SmppSettings",
    "SmppState",
    "status_outcome",
]
