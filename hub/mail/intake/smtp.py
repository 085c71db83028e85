"""The SMTP listener: aiosmtpd speaks the protocol, one small handler applies our policy.

It runs on the hub's own event loop. RCPT TO for anything but an intake address gets 550
(never an open relay); AUTH is offered only after STARTTLS; DATA with bare LF or CR line
endings is refused (SMTP smuggling); a 250 is sent only after the mail and its SMS are
committed, and every reply line is printable ASCII whatever it quotes.
"""

from __future__ import annotations

import asyncio
import logging
import re
import ssl
from functools import lru_cache
from typing import Any, AnyStr

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session, syntax

from hub.core.config import Config
from hub.mail.intake.outcome import IntakeOutcome, failure_reply
from hub.mail.intake.policy import IntakePolicy
from hub.mail.intake.smtp_text import shown, smtp_line
from hub.ports.mail import MailEnvelope, MailLogin
from hub.store.login_throttle import LoginThrottle

log = logging.getLogger("smshub.smtp")

_BARE_LINE_END = re.compile(rb"(?<!\r)\n|\r(?!\n)")
# C0 controls (NUL included) and DEL: never part of an address (RFC 5321 section 4.1.2).
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_CONTROL_IN_ADDRESS = (
    "501 5.1.3 control characters (such as NUL) are not allowed in an address; check the address"
)
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


SHUTTING_DOWN = b"421 4.3.2 service shutting down\r\n"


class IntakeSMTP(SMTP):
    """aiosmtpd's SMTP, remembering the MAIL FROM and RCPT TO addresses it parsed, and
    known to its listener so a stop can answer it `421`, and checking AUTH through the
    login throttle in a worker thread.

    Parsing an address costs aiosmtpd about 45 µs (it builds a typing.Protocol class on
    every call), a tenth of the event loop's time per mail; the same senders and intake
    addresses come back mail after mail.
    """

    def __init__(
        self,
        handler: Any,
        *args: Any,
        listener: SmtpListener | None = None,
        throttle: LoginThrottle | None = None,
        max_auth_failures: int = 3,
        **kwargs: Any,
    ) -> None:
        super().__init__(handler, *args, **kwargs)
        self.listener = listener
        # True while handle_DATA stores a mail: its answer must not be replaced by a 421.
        self.committing = False
        self.throttle = throttle
        self.max_auth_failures = max_auth_failures
        self.auth_failures = 0

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        return _parse_address(arg, self.local_part_limit)

    async def push(self, status: AnyStr) -> None:
        # The last guard of "every reply line is ASCII": aiosmtpd's own replies quote what
        # the client wrote (502 Could not VRFY ...), and a reply it cannot encode becomes a
        # 500 after the fact.
        if isinstance(status, str):
            await super().push(smtp_line(status))
        else:
            await super().push(status)

    # A control character in MAIL FROM or RCPT TO is refused before aiosmtpd's parser,
    # which accepts NUL in a local part, and before anything quotes or logs it.
    @syntax("MAIL FROM: <address>", extended=" [SP <mail-parameters>]")
    async def smtp_MAIL(self, arg: str | None) -> None:  # noqa: N802 (aiosmtpd's name)
        if not await self._control_refused("MAIL FROM", arg):
            await super().smtp_MAIL(arg)

    @syntax("RCPT TO: <address>", extended=" [SP <mail-parameters>]")
    async def smtp_RCPT(self, arg: str | None) -> None:  # noqa: N802 (aiosmtpd's name)
        if not await self._control_refused("RCPT TO", arg):
            await super().smtp_RCPT(arg)

    async def _control_refused(self, verb: str, arg: str | None) -> bool:
        """Whether ARG (of VERB) held a control character, and was refused."""
        if not (arg and _CONTROL.search(arg)):
            return False
        log.info("refused %s %s from %s: control character", verb, shown(arg), self._peer)
        await self.push(_CONTROL_IN_ADDRESS)
        return True

    @property
    def _peer(self) -> Any:
        return self.session.peer if self.session is not None else None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        first = self.transport is None
        super().connection_made(transport)
        if first and self.listener is not None:
            self.listener.sessions.add(self)
            if self.listener.closing:
                self.shut_down()

    def connection_lost(self, error: Exception | None) -> None:
        if self.listener is not None:
            self.listener.sessions.discard(self)
        super().connection_lost(error)

    def shut_down(self) -> None:
        """Answer `421` whatever the client is doing (a command, the middle of DATA: that
        mail is not taken, the client sends it again later) and end the session."""
        if self._handler_coroutine is not None:
            self._handler_coroutine.cancel()
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        assert isinstance(transport, asyncio.WriteTransport)
        transport.write(SHUTTING_DOWN)
        # Half-close: the client reads the 421 then our end of the stream; closing at once
        # with its unread DATA in our buffer would reset the connection and lose the 421.
        if transport.can_write_eof():
            transport.write_eof()
        else:
            transport.close()

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


class SmtpListener:
    """The listening socket and its live sessions."""

    def __init__(self) -> None:
        self.server: asyncio.Server | None = None
        self.sessions: set[IntakeSMTP] = set()
        self.closing = False

    async def shut_down(self, grace: float) -> None:
        """Stop listening; let mails being stored finish (at most GRACE seconds), answer
        every session `421 4.3.2 service shutting down`, and close them."""
        self.closing = True
        if self.server is not None:
            self.server.close()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        while any(s.committing for s in self.sessions) and loop.time() < deadline:
            await asyncio.sleep(0.02)
        for session in list(self.sessions):
            session.shut_down()
        # Clients close their side on reading the 421; one that does not is cut off.
        linger = loop.time() + min(1.0, max(0.0, deadline - loop.time()))
        while self.sessions and loop.time() < linger:
            await asyncio.sleep(0.02)
        for session in list(self.sessions):
            if session.transport is not None:
                session.transport.close()
        if self.server is not None:
            await self.server.wait_closed()


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
            log.info("refused RCPT %s from %s: %s", shown(address), session.peer, reply)
            return smtp_line(reply)
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(  # noqa: N802 (aiosmtpd's hook name)
        self, server: SMTP, session: Session, envelope: Envelope
    ) -> str:
        if isinstance(server, IntakeSMTP):
            server.committing = True
            try:
                return await self._take(server, session, envelope)
            finally:
                # aiosmtpd writes the answer in the same step as this returns.
                server.committing = False
        return await self._take(server, session, envelope)

    async def _take(self, server: SMTP, session: Session, envelope: Envelope) -> str:
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
            peer=_peer_address(session.peer),
            helo=session.host_name or "",
        )
        # Reading a mail is CPU work, with no I/O to wait for: under the GIL a worker thread
        # would hold up the other connections just as much, plus two thread switches. Only
        # a large mail goes to a thread, where the loop still gets its turns meanwhile.
        try:
            if len(raw) <= _READ_ON_LOOP:
                received = self.policy.receive(mail)
            else:
                received = await asyncio.to_thread(self.policy.receive, mail)
            if received.vouched is None:
                # Not from a trusted relay: the hub checks DKIM, SPF and DMARC itself (DNS).
                await asyncio.to_thread(self.policy.check_sender, received)
            outcome: IntakeOutcome = await self.policy.take_async(received, source=session)
        except Exception as exc:
            # Nothing was committed for this mail: the answer says whether a retry can help.
            log.exception("mail from %s could not be taken in", shown(mail.mail_from))
            return failure_reply(exc)
        if outcome.accepted and not outcome.duplicate and self.on_accepted is not None:
            # After the commit nothing may turn the 250 into an error: the SMS are queued.
            try:
                self.on_accepted(outcome)
            except Exception:
                log.exception("after-intake hook failed (the mail is safely stored)")
        return smtp_line(outcome.reply)

    async def handle_exception(self, error: Exception) -> str:
        """aiosmtpd's answer to a failure outside the hooks' own handling (its default quotes
        the exception in a 500)."""
        log.error("SMTP command failed", exc_info=error)
        return failure_reply(error)

    async def handle_QUIT(  # noqa: N802 (aiosmtpd's hook name)
        self, server: SMTP, session: Session, envelope: Envelope
    ) -> str:
        # No more mail on this connection: its group commit stops waiting for it.
        self.policy.source_left(session)
        return "221 Bye"


def _peer_address(peer: Any) -> str:
    """The client's IP address from aiosmtpd's session.peer ((host, port, ...) or a str)."""
    if isinstance(peer, tuple) and peer:
        return str(peer[0])
    return str(peer or "")


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
    listener = await start_smtp_listener(policy, config, on_accepted, host, port)
    assert listener.server is not None
    return listener.server


async def start_smtp_listener(
    policy: IntakePolicy,
    config: Config,
    on_accepted: Any = None,
    host: str | None = None,
    port: int | None = None,
) -> SmtpListener:
    """Listen on smtp.host:smtp.port in the running loop; returns the listener, whose
    `shut_down` ends it gracefully."""
    listener = SmtpListener()
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
            listener=listener,
            throttle=throttle,
            max_auth_failures=config.smtp.max_auth_failures,
        )

    listener.server = await loop.create_server(
        factory, host=host or config.smtp.host, port=config.smtp.port if port is None else port
    )
    return listener
