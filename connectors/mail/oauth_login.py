"""Signing in to a mailbox with an OAuth access token: SASL OAUTHBEARER where the server
offers it, else XOAUTH2 (Microsoft 365 offers only XOAUTH2), for IMAP and SMTP alike.

A refused token is refreshed once and tried again (it may have been revoked early, or an
instance's clock may be off); a second refusal is the caller's error. Passwords go through
the ordinary LOGIN / AUTH as before.
"""

from __future__ import annotations

import smtplib

from imapclient import IMAPClient
from imapclient.exceptions import LoginError

from hub.mail.oauth import MailboxAccess, sasl_oauthbearer, sasl_xoauth2


def imap_login(
    client: IMAPClient, username: str, password: str, access: MailboxAccess | None
) -> str:
    """Log CLIENT in; the mechanism used ("LOGIN", "XOAUTH2" or "OAUTHBEARER")."""
    if access is None or not access.oauth:
        client.login(username, password)
        return "LOGIN"
    offered = {c.upper() for c in client.capabilities()}
    mech = "OAUTHBEARER" if b"AUTH=OAUTHBEARER" in offered else "XOAUTH2"
    for renew in (False, True):
        token = access.token(renew=renew)
        try:
            if mech == "OAUTHBEARER":
                client.oauthbearer_login(username, token)
            else:
                client.oauth2_login(username, token)
            return mech
        except LoginError:
            if renew:
                raise
    raise AssertionError("unreachable")  # pragma: no cover


def smtp_login(
    client: smtplib.SMTP, username: str, password: str, access: MailboxAccess | None
) -> str:
    """AUTH on CLIENT (after EHLO); the mechanism used."""
    if access is None or not access.oauth:
        client.login(username, password)
        return "LOGIN"
    offered = client.esmtp_features.get("auth", "").upper().split()
    mech = "OAUTHBEARER" if "OAUTHBEARER" in offered else "XOAUTH2"
    host, port = getattr(client, "_host", ""), 0
    for renew in (False, True):
        token = access.token(renew=renew)
        initial = (
            sasl_oauthbearer(username, token, host, port)
            if mech == "OAUTHBEARER"
            else sasl_xoauth2(username, token)
        )

        def answer(challenge: bytes | None = None, initial: str = initial) -> str:
            # A challenge after the token carries the server's error (JSON): an empty line
            # ends the exchange, the server then answers 535.
            return initial if challenge is None else ""

        try:
            client.auth(mech, answer, initial_response_ok=True)
            return mech
        except smtplib.SMTPAuthenticationError:
            if renew:
                raise
    raise AssertionError("unreachable")  # pragma: no cover
