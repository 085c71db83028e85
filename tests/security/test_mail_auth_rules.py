"""The pieces of Rule 1 for mail, without servers: alignment, the relay's verdict, the
relay's networks and the configuration that names them."""

from __future__ import annotations

import pytest

from connectors.mail.imap_source import ImapSourceSettings
from hub.core.config import TrustedRelay, parse_config
from hub.errors import ConfigError
from hub.mail.intake.alignment import aligned, org_domain
from hub.mail.intake.sender_auth import relay_ids_for, relay_verdict

FROM = "anne@clinic.example"


@pytest.mark.parametrize(
    ("domain", "from_domain", "strict", "expected"),
    [
        ("clinic.example", "clinic.example", False, True),
        ("mail.clinic.example", "clinic.example", False, True),  # relaxed: same org domain
        ("mail.clinic.example", "clinic.example", True, False),
        ("example", "clinic.example", False, False),  # a parent domain is not alignment
        ("x@example", "clinic.example", False, False),
        ("other.example", "clinic.example", False, False),
        ("a.clinic.co.uk", "b.clinic.co.uk", False, True),  # org domain from the PSL
        ("evil.co.uk", "clinic.co.uk", False, False),
        ("co.uk", "clinic.co.uk", False, False),
    ],
)
def test_alignment_uses_organisational_domains(domain, from_domain, strict, expected):
    assert aligned(domain, from_domain, strict) is expected


def test_public_suffixes_have_no_organisational_domain():
    assert org_domain("co.uk") is None and org_domain("example") is None
    assert org_domain("www.clinic.example") == "clinic.example"


def _verdict(*headers: str, ids: tuple[str, ...] = ("mx.clinic.example",)) -> tuple[str, str]:
    v = relay_verdict(list(headers), FROM, ids)
    return v.status, v.why


def test_relay_dmarc_decides_and_must_name_the_from():
    assert _verdict("mx.clinic.example; dmarc=pass header.from=clinic.example")[0] == "pass"
    assert _verdict("mx.clinic.example; dmarc=pass")[0] == "fail"
    status, why = _verdict("mx.clinic.example; dmarc=pass header.from=other.example")
    assert status == "fail" and "other.example" in why
    status, why = _verdict(
        "mx.clinic.example; dkim=pass header.d=clinic.example; dmarc=fail "
        "header.from=clinic.example"
    )
    assert status == "fail" and "DMARC fail" in why


def test_relay_without_dmarc_needs_an_aligned_pass():
    assert (
        _verdict(
            "mx.clinic.example; dmarc=none header.from=clinic.example; "
            "dkim=pass header.d=mail.clinic.example"
        )[0]
        == "pass"
    )
    assert _verdict("mx.clinic.example; spf=pass smtp.mailfrom=x@example")[0] == "fail"
    assert _verdict("mx.clinic.example; dkim=pass header.d=evil.example")[0] == "fail"
    assert _verdict("mx.clinic.example; spf=softfail smtp.mailfrom=clinic.example")[0] == "fail"


def test_only_the_topmost_header_of_the_relay_counts():
    relay_fail = "mx.clinic.example; dmarc=fail header.from=clinic.example"
    forged_pass = "mx.clinic.example; dmarc=pass header.from=clinic.example"
    other = "mx.other.example; dmarc=fail header.from=clinic.example"
    assert _verdict(relay_fail, forged_pass)[0] == "fail"
    assert _verdict(other, forged_pass)[0] == "pass"  # another server's header is skipped
    # An unreadable header of the relay is not replaced by a readable copy below it.
    assert _verdict("mx.clinic.example; dmarc", forged_pass)[0] == "fail"
    # A header of an id not configured counts for nothing.
    assert _verdict(forged_pass, ids=("mx.relay.example",))[0] == "fail"


def _relays(*entries: dict[str, object]) -> list[TrustedRelay]:
    return parse_config({"smtp": {"trusted_relays": list(entries)}}).smtp.trusted_relays


def test_a_relay_is_trusted_by_its_networks():
    relays = _relays(
        {"authserv_id": "MX.Clinic.Example", "networks": ["192.0.2.0/24", "2001:db8::/32"]}
    )
    assert relay_ids_for(relays, "192.0.2.25") == ("mx.clinic.example",)
    assert relay_ids_for(relays, "2001:db8::25") == ("mx.clinic.example",)
    assert relay_ids_for(relays, "::ffff:192.0.2.25") == ("mx.clinic.example",)
    assert relay_ids_for(relays, "198.51.100.7") == ()
    assert relay_ids_for(relays, "not an address") == ()


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("mx.clinic.example", '{authserv_id = "mx.clinic.example", networks = ['),
        ({"authserv_id": "mx.clinic.example"}, "'smtp.trusted_relays.0.networks'"),
        ({"authserv_id": "mx", "networks": ["192.0.2.300/24"]}, "trusted_relays.0.networks.0"),
        ({"authserv_id": "", "networks": ["192.0.2.0/24"]}, "trusted_relays.0.authserv_id"),
    ],
)
def test_bad_trusted_relays_stop_startup_with_the_form_to_write(entry, message):
    with pytest.raises(ConfigError) as err:
        parse_config({"smtp": {"trusted_relays": [entry]}})
    assert message in str(err.value)


def test_dns_section_takes_addresses_only():
    config = parse_config({"dns": {"nameservers": ["127.0.0.1", "::1"], "port": 5353}})
    assert [str(a) for a in config.dns.nameservers] == ["127.0.0.1", "::1"]
    with pytest.raises(ConfigError, match="dns.nameservers.0"):
        parse_config({"dns": {"nameservers": ["resolver.example"]}})


def test_imap_table_names_its_servers_authserv_id():
    base = {"host": "imap.example", "username": "u", "intake_address": "sms@hub.test"}
    one = ImapSourceSettings.model_validate(
        {**base, "password_env": "X", "trusted_authserv_id": "imap.clinic.example"}
    )
    assert one.trusted_authserv_id == ["imap.clinic.example"]
    assert (
        ImapSourceSettings.model_validate({**base, "password_env": "X"}).trusted_authserv_id == []
    )
