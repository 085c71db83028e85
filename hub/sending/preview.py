"""What a send would be under this hub's settings: ``hub.compliance.preview`` given the hub's
opt-out mention and rules, marketing hours and public URL. One place for the console's live
preview, a calendar's reminder preview and `smshub sms count`, so that they count alike."""

from __future__ import annotations

from typing import Any

from hub.compliance import preview
from hub.core.config import Config


def preview_for(
    config: Config, text: str, sender: str | None, kind: str, country: str | None
) -> dict[str, Any]:
    """What a KIND ('alert' or 'marketing') SMS of TEXT from SENDER to COUNTRY would be: its
    final text, parts, encoding, warnings and errors (``hub.compliance.preview``)."""
    return preview(
        text,
        sender,
        kind,
        country,
        mention=config.optout_mention,
        hours=config.marketing_hours,
        rules=config.compliance,
        public_url=config.hub.public_url,
    )
