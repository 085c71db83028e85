"""Building the submit_sm of one SMS, and what one submit_sm came to."""

from __future__ import annotations

from dataclasses import dataclass

from connectors.sms.smpp.pdu import ESM_UDHI, ShortMessage, relative_validity
from connectors.sms.smpp.settings import SmppSettings
from connectors.sms.smpp.text import concatenated_parts
from hub.core import segments
from hub.core.phone import is_alphanumeric_sender
from hub.ports.sms import DeliveryReason, OutgoingSms


@dataclass
class Attempt:
    """The outcome of one submit_sm."""

    ok: bool
    message_id: str = ""
    permanent: DeliveryReason | None = None
    throttled: bool = False
    # The submit_sm went out but no answer came: the SMSC may have taken it.
    maybe_sent: bool = False
    detail: str = ""


def submit_bodies(sms: OutgoingSms, settings: SmppSettings, ref: int) -> list[bytes]:
    """The submit_sm bodies of a message (several with UDH when it is long, all with the
    concatenation reference REF), all encoded before the first goes out, so a bad field fails
    the message before any part is sent."""
    s = settings
    encoding = segments.count(sms.text).encoding
    parts = segments.split(sms.text)
    coded = concatenated_parts(sms.text, parts, encoding, ref)
    source, ton, npi = source_address(sms.sender, settings)
    validity = relative_validity(s.validity_hours * 3600) if s.validity_hours else ""
    return [
        ShortMessage(
            service_type=s.service_type,
            source_addr=source,
            source_addr_ton=ton,
            source_addr_npi=npi,
            destination_addr=sms.to.removeprefix("+"),
            dest_addr_ton=s.dest_ton,
            dest_addr_npi=s.dest_npi,
            esm_class=ESM_UDHI if udh else 0,
            validity_period=validity,
            registered_delivery=1 if s.request_receipts else 0,
            data_coding=dcs,
            short_message=octets,
        ).encode()
        for dcs, octets, udh in coded
    ]


def source_address(sender: str | None, settings: SmppSettings) -> tuple[str, int, int]:
    """(source_addr, TON, NPI) for SENDER (or the configured one): guessed from its form
    unless the settings fix them."""
    addr = sender or settings.source_addr
    if not addr:
        ton, npi = 0, 0
    elif is_alphanumeric_sender(addr):
        ton, npi = 5, 0
    elif addr.startswith("+"):
        addr, ton, npi = addr[1:], 1, 1
    else:
        ton, npi = 0, 1
    return (
        addr,
        ton if settings.source_ton is None else settings.source_ton,
        npi if settings.source_npi is None else settings.source_npi,
    )
