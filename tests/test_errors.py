"""The one error tree (hub/errors.py): every exception the hub and its connectors raise
derives from HubError, the module docstring draws every class, and each class's
``http_status`` is the one mapping the API, the console and provider callbacks answer with."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest

from hub import errors
from hub.errors import HubError

# Control flow that never leaves its module (hub/errors.py names them).
LOCAL = {
    "hub.mail.intake.outcome.Rejected",
    "hub.mail.intake.transaction.GroupUnpaid",
    "connectors.mail.imap_source._ConnectionLost",
    "connectors.calendar.google._Conflict",
    "connectors.calendar.caldav._Gone",
}


def _exception_classes() -> list[type[BaseException]]:
    found: list[type[BaseException]] = []
    for top in ("hub", "connectors", "scheduler"):
        package = importlib.import_module(top)
        for info in pkgutil.walk_packages(package.__path__, f"{top}."):
            if info.name.endswith("__main__") or ".migrations" in info.name:
                continue
            module = importlib.import_module(info.name)
            found += [
                obj
                for obj in vars(module).values()
                if inspect.isclass(obj)
                and issubclass(obj, BaseException)
                and obj.__module__ == module.__name__
            ]
    return found


def test_every_exception_is_in_the_tree() -> None:
    classes = _exception_classes()
    outside = {f"{c.__module__}.{c.__qualname__}" for c in classes if not issubclass(c, HubError)}
    assert outside == LOCAL
    # The tree is defined in one place; only a few classes live beside what they name.
    elsewhere = {
        f"{c.__module__}.{c.__qualname__}"
        for c in classes
        if issubclass(c, HubError) and c.__module__ != "hub.errors"
    }
    assert elsewhere == {
        "hub.mail.parse.structure.MimeTooDeep",
        "connectors.mail.source_base.ImapUnavailable",
        "connectors.mail.api_client.MailApiError",
        "connectors.sms.smpp.link.NotBound",
        "connectors.sms.smpp.link.LinkLost",
        "connectors.sms.smpp.pdu.PduError",
    }


def test_the_docstring_draws_every_class() -> None:
    drawn = errors.__doc__ or ""
    for cls in _exception_classes():
        if issubclass(cls, HubError):
            assert cls.__name__ in drawn, cls


@pytest.mark.parametrize(
    ("cls", "status"),
    [
        (errors.HubError, 400),
        (errors.ConfigError, 400),
        (errors.NotFound, 404),
        (errors.InvalidInput, 422),
        (errors.TooLarge, 413),
        (errors.FileTooLarge, 413),
        (errors.UnsupportedType, 415),
        (errors.UnsupportedFile, 415),
        (errors.OutboundRefused, 422),
        (errors.IdempotencyKeyReused, 422),
        (errors.InsufficientCredits, 402),
        (errors.AccountDisabled, 403),
        (errors.Forbidden, 403),
        (errors.ConflictError, 409),
        (errors.IdempotencyKeyBusy, 409),
        (errors.TemporaryFailure, 503),
        (errors.CallbackRejected, 400),
        (errors.BadSignature, 401),
        (errors.MalformedCallback, 400),
    ],
)
def test_http_status_is_one_mapping(cls: type[HubError], status: int) -> None:
    assert cls.http_status == status


def test_connector_errors_keep_their_standard_bases() -> None:
    from connectors.sms.smpp import LinkLost, NotBound
    from connectors.sms.smpp.pdu import PduError

    assert issubclass(NotBound, ConnectionError) and issubclass(NotBound, errors.ConnectorError)
    assert issubclass(LinkLost, ConnectionError)
    assert issubclass(PduError, ValueError) and issubclass(PduError, errors.ConnectorError)
    assert errors.ConfigError.exit_code == 2 and errors.SchemaError.exit_code == 3
