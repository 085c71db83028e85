"""`smshub accounts enable` exists, as the disabled-account error tells the user to run it
(issue 17), and mirrors `accounts disable`."""

from __future__ import annotations

import json

from tests.test_cli import smshub  # noqa: F401  (the CLI fixture)


def _send(smshub) -> tuple[int, str, str]:  # noqa: F811
    return smshub("send", "--to", "0612345678", "--text", "hello", "--account", "acme", "--json")


def test_disable_then_enable_as_the_error_says(smshub):  # noqa: F811
    assert smshub("accounts", "create", "acme", "--region", "FR")[0] == 0
    assert smshub("accounts", "credit", "acme", "5")[0] == 0
    code, out, _ = smshub("accounts", "disable", "acme")
    assert code == 0 and "disabled" in out

    code, out, err = _send(smshub)
    assert code != 0
    assert "smshub accounts enable acme" in out + err

    code, out, _ = smshub("accounts", "enable", "acme")
    assert code == 0 and out.strip() == "account acme enabled"
    code, out, _ = smshub("accounts", "show", "acme", "--json")
    assert json.loads(out)["disabled"] is False
    code, out, _ = _send(smshub)
    assert code == 0, out

    # Enabling an account that is not disabled is harmless; an unknown one is a clear error.
    assert smshub("accounts", "enable", "acme")[0] == 0
    code, out, err = smshub("accounts", "enable", "ghost")
    assert code != 0 and "ghost" in out + err
    code, out, _ = smshub("accounts", "--help")
    assert "enable" in out
