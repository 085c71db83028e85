"""The SMTP listener: aiosmtpd speaks the protocol, one small handler applies our policy.

It runs on the hub's own event loop. RCPT TO for anything but an intake address gets 550
(never an open relay); AUTH is offered only after STARTTLS; DATA with bare LF or CR line
endings is refused (SMTP smuggling); a 250 is sent only after the mail and its SMS are
committed.
"""

from __future__ import annotations

import asyncio
import logging
import re
import ssl
from functools import lru_cache
from typing import Any

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from hub.config import Config
from hub.intake.addresses import MailLogin
from hub.intake.policy import IntakeOutcome, IntakePolicy, MailEnvelope
from hub.login_throttle import LoginThrottle

log = logging.getLogger("smshub.smtp")

_BARE_LINE_END = re.compile(rb"(?<!\r)\n|\r(?!\n)")
# Mails up to this size are read on the event loop (a few hundred microseconds of CPU).
_READ_ON_LOOP = 64 * 1024
# What IntakeSMTP._authenticate hands back for its own check.
_PENDING = "smshub: check pending"


class _Limits:
    """What aiosmtpd's address parser reads of its SMTP instance."""

    def __init__(self, local_part_limit: int) -> None:
        self.local_part_limit = local_part_limit


@lru_cache(maxsize=4096)
def _parse_address(arg: str, local_part_limit: int) -> tuple[str | None, str | None]:
    # aiosmtpd's own parser, unchanged: its answer depends on these two values only.
    parsed: tuple[str | None, str | None] = SMTP._getaddr(_Limits(local_part_limit), arg)  # type: ignore[arg-type]
    return parsed


class IntakeSMTP(SMTP):
    """aiosmtpd's SMTP, remembering the MAIL FROM and RCPT TO addresses it parsed, and
    checking AUTH through the login throttle in a worker thread.

    Parsing an address costs aiosmtpd about 45 µs (it builds a typing.Protocol class on
    every call), a tenth of the event loop's time per mail; the same senders and intake
    addresses come back mail after mail.
    """

    def __init__(
        self,
        handler: Any,
        *args: Any,
        throttle: LoginThrottle | None = None,
        max_auth_failures: int = 3,
        **kwargs: Any,
    ) -> None:
        super().__init__(handler, *args, **kwargs)
        self.throttle = throttle
        self.max_auth_failures = max_auth_failures
        self.auth_failures = 0

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        return _parse_address(arg, self.local_part_limit)

    # aiosmtpd checks credentials with a plain function on the event loop; scrypt there
    # stalls every HTTP request and SMTP session of the process. Its PLAIN and LOGIN
    # dialogues are kept; what they decode is handed back (_PENDING) and checked here.
    def _authenticate(self, mechanism: str, auth_data: Any) -> AuthResult:
        return AuthResult(success=False, handled=False, message=_PENDING, auth_data=auth_data)

    async def auth_PLAIN(self, _: Any, args: list[str]) -> AuthResult:  # noqa: N802 (aiosmtpd's name)
        return await self._check(await super().auth_PLAIN(_, args))

    async def auth_LOGIN(self, _: Any, args: list[str]) -> AuthResult:  # noqa: N802 (aiosmtpd's name)
        return await self._check(await super().auth_LOGIN(_, args))

    async def _check(self, result: AuthResult) -> AuthResult:
        if result.message is not _PENDING:
            return result
        credentials = result.auth_data
        assert isinstance(credentials, LoginPassword)
        assert self.session is not None
        username = credentials.login.decode("utf-8", "replace")
        password = credentials.password.decode("utf-8", "replace")
        address = str(self.session.peer[0]) if self.session.peer else ""
        if self.throttle is None:
            return AuthResult(success=False, handled=False)
        attempt = await asyncio.to_thread(self.throttle.attempt, username, password, address)
        if attempt.login is not None:
            return AuthResult(success=True, auth_data=attempt.login)
        self.auth_failures += 1
        log.warning(
            "SMTP AUTH %s for %r from %s",
            f"throttled ({attempt.seconds} s)" if attempt.throttled else "failed",
            username,
            address,
        )
        if self.auth_failures >= self.max_auth_failures:
            # A client that keeps guessing on one connection is let go: a new connection
            # costs it a handshake (and STARTTLS) per few guesses.
            await self.push("421 4.7.0 too many failed logins; closing the connection")
            assert self._handler_coroutine is not None and self.transport is not None
            self._handler_coroutine.cancel()
            self.transport.close()
            return AuthResult(success=False, handled=True)
        if attempt.throttled:
            # 4xx: the same login succeeds later.
            return AuthResult(
                success=False,
                handled=False,
                message=f"454 4.7.0 too many failed logins, try again in {attempt.seconds} s",
            )
        return AuthResult(success=False, handled=False)


class IntakeHandler:
    """aiosmtpd handler hooks: policy decisions only; the protocol is aiosmtpd's."""

    def __init__(self, policy: IntakePolicy, config: Config, on_accepted: Any = None) -> None:
        self.policy = policy
        self.config = config
        # Called (in the event loop) with each accepted IntakeOutcome: confirmations, wake-up.
        self.on_accepted = on_accepted

    async def handle_RCPT(  # noqa: N802 (aiosmtpd's hook name)
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        if len(envelope.rcpt_tos) >= self.config.smtp.max_recipients:
            return "452 4.5.3 too many recipients in one mail"
        login = session.auth_data if isinstance(session.auth_data, MailLogin) else None
        # An intake address seen lately is answered here; anything else needs the database.
        known, reply = self.policy.cached_rcpt_reply(address, login)
        if not known:
            reply = await asyncio.to_thread(self.policy.check_rcpt, address, login)
        if reply is not None:
            log.info("refused RCPT %s from %s: %s", address, session.peer, reply)
            return reply
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(  # noqa: N802 (aiosmtpd's hook name)
        self, server: SMTP, session: Session, envelope: Envelope
    ) -> str:
        raw = envelope.original_content or b""
        if _BARE_LINE_END.search(raw):
            return "550 5.6.0 bare LF or CR line endings are not allowed; use CRLF"
        login = session.auth_data if isinstance(session.auth_data, MailLogin) else None
        mail = MailEnvelope(
            raw=raw,
            mail_from=envelope.mail_from or "",
            rcpt_to=list(envelope.rcpt_tos),
            login=login,
            source="smtp",
        )
        # Reading a mail is CPU work, with no I/O to wait for: under the GIL a worker thread
        # would hold up the other connections just as much, plus two thread switches. Only
        # a large mail goes to a thread, where the loop still gets its turns meanwhile.
        if len(raw) <= _READ_ON_LOOP:
            received = self.policy.receive(mail)
        else:
            received = await asyncio.to_thread(self.policy.receive, mail)
        outcome: IntakeOutcome = await self.policy.take_async(received, source=session)
        if outcome.accepted and not outcome.duplicate and self.on_accepted is not None:
            try:
                self.on_accepted(outcome)
            except Exception:
                log.exception("after-intake hook failed (the mail is safely stored)")
        return outcome.reply

    async def handle_QUIT(  # noqa: N802 (aiosmtpd's hook name)
        self, server: SMTP, session: Session, envelope: Envelope
    ) -> str:
        # No more mail on this connection: its group commit stops waiting for it.
        self.policy.source_left(session)
        return "221 Bye"


def _refuse_all(*_: Any) -> AuthResult:
    # Never called: IntakeSMTP checks credentials itself (see IntakeSMTP._authenticate).
    return AuthResult(success=False, handled=False)


def tls_context(config: Config) -> ssl.SSLContext | None:
    """The STARTTLS context, or None when no certificate is configured."""
    if not config.smtp.tls_cert_file:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(config.smtp.tls_cert_file, config.smtp.tls_key_file or None)
    return context


async def start_smtp(
    policy: IntakePolicy,
    config: Config,
    on_accepted: Any = None,
    host: str | None = None,
    port: int | None = None,
) -> asyncio.Server:
    """Listen on smtp.host:smtp.port in the running loop; returns the server."""
    handler = IntakeHandler(policy, config, on_accepted)
    context = tls_context(config)
    throttle = LoginThrottle(
        policy.engine, config.console.max_failed_logins, config.console.login_max_delay
    )
    loop = asyncio.get_running_loop()

    def factory() -> SMTP:
        return IntakeSMTP(
            handler,
            data_size_limit=config.smtp.max_message_size,
            hostname=config.smtp.hostname or None,
            ident="smshub",
            tls_context=context,
            timeout=config.smtp.command_timeout,
            authenticator=_refuse_all,
            auth_require_tls=True,
            auth_exclude_mechanism=["CRAM-MD5"],
            loop=loop,
            throttle=throttle,
            max_auth_failures=config.smtp.max_auth_failures,
        )

    server = await loop.create_server(
        factory, host=host or config.smtp.host, port=config.smtp.port if port is None else port
    )
    return server
