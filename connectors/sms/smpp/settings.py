"""The SMPP provider's config section, and what a submit_sm_resp status means for a message."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator

from connectors.sms.smpp.pdu import Status
from hub.ports.sms import DeliveryReason, ProviderSettings, SendOutcome

# The SMSC is busy, not refusing: back off and try again (or through another provider).
THROTTLE_STATUSES = frozenset({Status.RTHROTTLED, Status.RMSGQFUL})
# Statuses that refuse this message for good; everything not listed (system errors,
# temporary application errors, vendor codes) is treated as temporary, so an unknown code
# costs a few retries instead of a lost message.
PERMANENT_STATUSES: Mapping[int, DeliveryReason] = {
    Status.RINVDSTADR: DeliveryReason.INVALID_NUMBER,
    Status.RINVMSGLEN: DeliveryReason.OTHER,
    Status.RINVCMDLEN: DeliveryReason.OTHER,
    Status.RINVCMDID: DeliveryReason.OTHER,
    Status.RINVPRTFLG: DeliveryReason.OTHER,
    Status.RINVREGDLVFLG: DeliveryReason.OTHER,
    Status.RINVSRCADR: DeliveryReason.OTHER,
    Status.RINVSERTYP: DeliveryReason.OTHER,
    Status.RINVNUMDESTS: DeliveryReason.OTHER,
    Status.RINVDESTFLAG: DeliveryReason.OTHER,
    Status.RINVSUBREP: DeliveryReason.OTHER,
    Status.RINVESMCLASS: DeliveryReason.OTHER,
    Status.RINVSRCTON: DeliveryReason.OTHER,
    Status.RINVSRCNPI: DeliveryReason.OTHER,
    Status.RINVDSTTON: DeliveryReason.OTHER,
    Status.RINVDSTNPI: DeliveryReason.OTHER,
    Status.RINVSCHED: DeliveryReason.OTHER,
    Status.RINVEXPIRY: DeliveryReason.OTHER,
    Status.RINVDFTMSGID: DeliveryReason.OTHER,
    Status.RX_P_APPN: DeliveryReason.OTHER,
    Status.RX_R_APPN: DeliveryReason.OTHER,
    Status.RINVOPTPARSTREAM: DeliveryReason.OTHER,
    Status.ROPTPARNOTALLWD: DeliveryReason.OTHER,
    Status.RINVPARLEN: DeliveryReason.OTHER,
    Status.RMISSINGOPTPARAM: DeliveryReason.OTHER,
    Status.RINVOPTPARAMVAL: DeliveryReason.OTHER,
}


def status_outcome(
    status: int, settings: SmppSettings
) -> tuple[SendOutcome, DeliveryReason | None]:
    """What a submit_sm_resp error means for the message: permanent (with a reason) or not."""
    if status in settings.invalid_number_statuses:
        return SendOutcome.PERMANENT, DeliveryReason.INVALID_NUMBER
    if status in settings.permanent_statuses:
        return SendOutcome.PERMANENT, DeliveryReason.OTHER
    reason = PERMANENT_STATUSES.get(status)
    if reason is not None:
        return SendOutcome.PERMANENT, reason
    return SendOutcome.TRANSIENT, None


class SmppSettings(ProviderSettings):
    """``[providers.NAME]`` with ``type = "smpp"`` (documented in docs/smpp.md)."""

    type: Literal["smpp"] = "smpp"
    host: str
    port: int = Field(2775, ge=1, le=65535)
    system_id: str = Field(max_length=15)
    # The bind password comes from the environment or a file, never from the config itself.
    password_env: str | None = None
    password_file: str | None = None
    system_type: str = Field("", max_length=12)
    address_range: str = Field("", max_length=40)
    # Sender for messages that have none; empty lets the SMSC use the account's default.
    source_addr: str = ""
    # TON/NPI of the sender; unset means guessed (alphanumeric 5/0, "+..." 1/1, else 0/1).
    source_ton: int | None = Field(None, ge=0, le=255)
    source_npi: int | None = Field(None, ge=0, le=255)
    dest_ton: int = Field(1, ge=0, le=255)
    dest_npi: int = Field(1, ge=0, le=255)
    service_type: str = Field("", max_length=5)
    # registered_delivery=1 on every part: a final receipt for each.
    request_receipts: bool = True
    # Hours the SMSC keeps trying a message; unset leaves the SMSC's default.
    validity_hours: float | None = Field(None, gt=0)
    # Submits in flight without a response.
    window: int = Field(10, ge=1, le=1000)
    response_timeout: float = Field(10.0, gt=0)
    connect_timeout: float = Field(5.0, gt=0)
    # Seconds of silence on the link before an enquire_link probes it.
    enquire_link_interval: float = Field(30.0, gt=0)
    # First delay before reconnecting; doubles after each failure up to the maximum.
    reconnect_delay: float = Field(1.0, gt=0)
    reconnect_max_delay: float = Field(60.0, gt=0)
    # First pause after ESME_RTHROTTLED / ESME_RMSGQFUL; doubles while they go on.
    throttle_delay: float = Field(1.0, ge=0)
    throttle_max_delay: float = Field(30.0, ge=0)
    # How long a later part of a long message is retried (throttling, reconnect) before the
    # send is reported unknown (earlier parts went out; resending all would repeat them).
    part_retry_seconds: float = Field(10.0, ge=0)
    # Extra command_status codes (vendor range) that refuse a message for good.
    permanent_statuses: list[int] = []
    invalid_number_statuses: list[int] = []
    # Receipt error codes (err: field or network_error_code TLV) by meaning; GSM MAP codes
    # by default: 1 unknown subscriber, 5 unidentified, 9 illegal subscriber; 6/27 absent,
    # 31 busy, 32 delivery failure, 34 system failure.
    invalid_number_errors: list[int] = [1, 5, 9]
    network_error_errors: list[int] = [6, 27, 31, 32, 34]
    # Region for national numbers in inbound senders (e.g. "FR"); empty: international only.
    region: str = ""
    # Time zone of the dates in receipts.
    receipt_timezone: str = "UTC"
    # Hours the part ids of long messages are kept for their receipts.
    receipt_window_hours: float = Field(72.0, gt=0)
    # Seconds to wait for the missing parts of a long inbound SMS before storing what came.
    mo_concat_timeout: float = Field(3600.0, gt=0)
    # Where earlier builds kept their JSONL state (part ids of long messages, parts of long
    # inbound SMS); empty means DATA_DIR/smpp-NAME.jsonl. Moved into the database at start.
    state_path: str = ""

    @field_validator("receipt_timezone")
    @classmethod
    def _check_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}") from None
        return value
