"""The replies list links every conversation to a thread page that opens (issue #14): an
alphanumeric sender ('La Poste') or a short code ('36180') is named in the URL as '~' and
the sender, not passed for a phone number (which answered 404)."""

from __future__ import annotations

import html
import re
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import select

from hub.core.config import Config
from hub.store.db import session_scope
from hub.store.models import InboundMessage
from tests.conftest import make_config
from tests.console import conftest as console_fixtures

users = console_fixtures.users
console = console_fixtures.console


@pytest.fixture
def config(db_url: str, tmp_path: Path) -> Config:
    """SMS to the simulator's number belong to acme, whoever sends them (a name can be sent
    nothing, so no earlier SMS of ours tells the account)."""
    return make_config(db_url, tmp_path, inbound={"number_accounts": {"+33700000000": "acme"}})


@pytest.mark.parametrize("sender", ["LaPoste", "La Poste", "36180", "+33612345678"])
async def test_every_conversation_link_opens_its_thread(hub: Any, console: Any, sender: str):
    assert await hub.providers["simulator"].receive(sender, "Votre colis arrive demain")
    with session_scope(hub.engine) as s:
        row = s.exec(select(InboundMessage)).one()
        assert (row.sender, row.account_id is not None) == (sender, True)
    alice = await console("alice")
    listing = await alice.get("/console/replies")
    assert listing.status_code == 200
    links = re.findall(r'href="(/console/replies/[^"?]+[^"]*)"', listing.text)
    assert len(links) == 1, listing.text
    thread = await alice.get(html.unescape(links[0]))
    assert thread.status_code == 200, (links[0], thread.text[:300])
    assert "Votre colis arrive demain" in thread.text
    if not sender.startswith("+"):
        assert "cannot receive answers" in thread.text
        assert 'name="nonce"' not in thread.text  # no answer form for a name
