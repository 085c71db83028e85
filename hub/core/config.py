"""Configuration: a TOML file validated at start; every error names the key that is wrong.

Embedded defaults let the hub run with no file at all (SQLite under ./var, the simulator).
Secrets are never written in the file: options ending in ``_env`` name an environment
variable and options ending in ``_file`` name a file that holds the secret.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    IPvAnyAddress,
    IPvAnyNetwork,
    ValidationError,
    field_validator,
    model_validator,
)

from hub.compliance import MarketingHours, OptOutMention, OptOutRules
from hub.errors import ConfigError

CONFIG_ENV = "SMSHUB_CONFIG"
DATABASE_ENV = "SMSHUB_DATABASE_URL"


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class HubSection(Section):
    # Where the hub keeps its SQLite database, simulator log and other files.
    data_dir: Path = Path("var")
    # Base URL at which providers reach the hub's callbacks (and users its API).
    public_url: str = "http://127.0.0.1:8025"
    # Region used to read national numbers ("06 12 34 56 78") when an account sets none.
    default_region: str = "FR"
    # Language of the mails and SMS texts the hub writes for accounts that set none ("fr",
    # "en"); empty: the language of the account's region (FR, BE, CH, LU, MC: French).
    locale: Literal["", "en", "fr"] = ""
    # Log level: debug, info, warning, error.
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    # File holding the key(s) that encrypt secrets kept in the database, one per line, the
    # first encrypting (see hub/store/secretbox.py); SMSHUB_SECRET_KEY wins over it. Unset: a key
    # generated in DATA_DIR/secret.key (one machine only: instances must share the key).
    secret_key_file: str = ""
    # On SIGTERM/SIGINT: seconds the provider calls (and mails) in flight get to finish;
    # claims not yet handed to a provider go back to the queue at once.
    stop_grace_seconds: float = Field(25.0, ge=0)
    # This instance's name on every log line, in /readyz and in the database's list of
    # connections (PostgreSQL application_name); empty means HOSTNAME-PID.
    instance_id: str = Field("", max_length=48)

    @field_validator("default_region")
    @classmethod
    def _upper_region(cls, value: str) -> str:
        if len(value) != 2 or not value.isalpha():
            raise ValueError("must be a two-letter ISO country code such as FR or CH")
        return value.upper()


class DatabaseSection(Section):
    # SQLAlchemy URL; empty means SQLite at DATA_DIR/smshub.db. PostgreSQL example:
    # postgresql+psycopg://smshub@127.0.0.1:5432/smshub
    url: str = ""
    # Seconds a writer waits for a lock on SQLite before giving up.
    sqlite_busy_timeout: float = 30.0


class HttpSection(Section):
    host: str = "127.0.0.1"
    port: int = Field(8025, ge=1, le=65535)
    # Bearer token that GET /metrics requires: an environment variable (metrics_token_env)
    # or a file (metrics_token_file). Unset: /metrics answers loopback clients only.
    metrics_token_env: str = ""
    metrics_token_file: str = ""
    # Seconds a client may take to send a whole request (line, headers and body); slower
    # ones are answered 408 and disconnected, so half-sent requests cannot pile up.
    request_timeout: float = Field(30.0, gt=0)
    # Connections served at once; past it, new requests are answered 503.
    max_connections: int = Field(1000, ge=1)

    def metrics_token(self) -> str | None:
        """The token /metrics requires, None when none is configured (read at start)."""
        token = read_secret(self, "metrics_token", "http")
        if token is None:
            return None
        token = token.strip()
        if not token:
            where = "metrics_token_env" if self.metrics_token_env else "metrics_token_file"
            raise ConfigError(f"'http.{where}': the metrics token is empty")
        return token


class ApiSection(Section):
    """Bounds of the REST resources under /v1 (lists, imports, bulk number requests)."""

    # Items a list answers when the request gives no `limit`, and the largest `limit`.
    page_size: int = Field(100, ge=1, le=10_000)
    max_page_size: int = Field(1000, ge=1, le=10_000)
    # Bytes of one uploaded import file (contacts, blacklist, invalid numbers).
    max_upload_bytes: int = Field(10 * 1024 * 1024, ge=1024)
    # Rows of one imported file.
    max_import_rows: int = Field(100_000, ge=1, le=1_000_000)
    # Numbers in one JSON request (list members, blacklist, invalid numbers, previews).
    max_items: int = Field(1000, ge=1, le=100_000)


class SendingSection(Section):
    # Most SMS parts one message may use; longer texts are refused before anything is charged.
    max_parts: int = Field(6, ge=1, le=255)
    # Credits per SMS part, unless a country has its own price below.
    credits_per_part: int = Field(1, ge=0)
    # Credits per SMS part by destination country (ISO code), e.g. { CH = 2 }.
    country_credits: dict[str, int] = {}
    # Most recipients one submission may name.
    max_recipients: int = Field(10_000, ge=1)
    # Hours an idempotency key (API Idempotency-Key, CLI --idempotency-key) is remembered with
    # its request and answer; older ones are pruned, as payment APIs do after 24 h. Each
    # recipient's message keeps its own key for good, so a late retry still sends nothing twice.
    idempotency_key_hours: float = Field(24.0, gt=0)


class DispatcherSection(Section):
    # Run the dispatcher in this process.
    enabled: bool = True
    # Messages claimed per round.
    batch_size: int = Field(200, ge=1, le=10_000)
    # Seconds between looks at the outbox when it is empty.
    poll_interval: float = Field(0.2, gt=0)
    # Seconds a claim lasts unless renewed: a living dispatcher renews its claims every
    # third of this, so one that died loses them (and they are recovered) after about this.
    claim_lease_seconds: float = Field(30.0, gt=0)
    # Attempts for a transient provider failure before the message fails.
    max_attempts: int = Field(8, ge=1)
    # First retry delay in seconds; doubles each attempt (capped at one hour).
    retry_backoff_seconds: float = Field(5.0, gt=0)
    # Hours after sending with no final report before a message becomes dr_unavailable;
    # network_error reports are retried within the same window.
    report_window_hours: float = Field(48.0, gt=0)


class TrustedRelay(Section):
    # The authserv-id the relay writes in its Authentication-Results (RFC 8601), e.g.
    # "mx.clinic.example"; only its topmost header counts.
    authserv_id: str = Field(min_length=1)
    # The addresses the relay connects from (CIDR): its verdicts count only on a connection
    # from one of them, since anyone can write the header itself.
    networks: list[IPvAnyNetwork] = Field(min_length=1)

    @field_validator("authserv_id")
    @classmethod
    def _lower_id(cls, value: str) -> str:
        return value.strip().lower()


class SmtpSection(Section):
    # Listen for mail to SMS on HOST:PORT (the hub's intake addresses only; never a relay).
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(2525, ge=1, le=65535)
    # Name announced in the greeting; empty means this machine's name.
    hostname: str = ""
    # Largest mail accepted, in bytes (larger ones get 552).
    max_message_size: int = Field(10 * 1024 * 1024, ge=1024)
    # Most RCPT TO per mail.
    max_recipients: int = Field(50, ge=1)
    # Most mails one sender may submit per minute.
    mails_per_sender_per_minute: int = Field(30, ge=1)
    # Most SMS one account may send from mail per hour.
    sms_per_account_per_hour: int = Field(2000, ge=1)
    # Seconds of silence before the connection is closed.
    command_timeout: float = Field(300.0, gt=0)
    # Deepest nesting of MIME parts (parts inside parts) a mail may have; deeper ones get
    # 554 (reading them costs CPU with each level and ends in a recursion error).
    max_mime_depth: int = Field(20, ge=1, le=100)
    # Failed AUTH attempts on one connection before it is closed (421); the login throttle
    # ([console] max_failed_logins) slows the attempts across connections.
    max_auth_failures: int = Field(3, ge=1)
    # PEM certificate and key for STARTTLS; SMTP AUTH is offered only after STARTTLS.
    tls_cert_file: str = ""
    tls_key_file: str = ""
    # The organisation's own relays, {authserv_id = "mx.clinic.example", networks =
    # ["192.0.2.0/24"]}: their SPF/DKIM/DMARC verdicts on a connection from their networks
    # decide for allowed senders. Other senders are checked by the hub itself ([dns]).
    trusted_relays: list[TrustedRelay] = []
    # Send the sender a confirmation e-mail after intake (needs [mail_out]).
    confirmations: bool = True
    # Domain of the Reply-To addresses on forwarded SMS (reply+TOKEN@DOMAIN); point its MX
    # at this listener. Empty: forwarded SMS cannot be answered by e-mail.
    reply_domain: str = ""


class DnsSection(Section):
    # The resolver for the hub's own SPF, DKIM and DMARC checks: name servers (IP
    # addresses); empty means the system's (/etc/resolv.conf).
    nameservers: list[IPvAnyAddress] = []
    port: int = Field(53, ge=1, le=65535)
    # Seconds one lookup may take; a lookup that fails or times out makes the mail a 451
    # (the sender's server tries again later).
    timeout: float = Field(5.0, gt=0, le=60)


class ConsoleSection(Section):
    # The web console at /console (same HTTP server as the API; users log in with the
    # account users made by `smshub mail user`).
    enabled: bool = True
    # Hours a console login lasts.
    session_hours: float = Field(12.0, gt=0)
    # Secure (HTTPS-only) cookies: "auto" when hub.public_url starts with https://.
    secure_cookies: Literal["auto", "always", "never"] = "auto"
    # Login throttle of the console and SMTP AUTH (one, kept in the database): after this
    # many failed logins in 15 minutes for a user name, or from a client address, each
    # further try waits 1 s, 2 s, 4 s ... (up to login_max_delay) after the last failure and
    # is answered "try again in N s" unchecked. A user name's failures slow only addresses
    # that failed themselves: a user typing the right password elsewhere is never locked out.
    max_failed_logins: int = Field(5, ge=1)
    login_max_delay: float = Field(60.0, gt=0)
    # Rows per page in lists (history, ledger, ...).
    page_size: int = Field(50, ge=5, le=500)


class MailOutSection(Section):
    # How the hub's own mail (confirmations, forwarded SMS) is delivered: "smtp" through a
    # relay, or "imap" appended straight into a folder of a mailbox.
    method: Literal["smtp", "imap"] = "smtp"
    # SMTP relay (method "smtp"). Empty host: the hub sends no mail.
    host: str = ""
    port: int = Field(587, ge=1, le=65535)
    # Use STARTTLS (port 587) or implicit TLS (port 465).
    starttls: bool = True
    implicit_tls: bool = False
    username: str = ""
    # "password", or "xoauth2": AUTH XOAUTH2 / OAUTHBEARER with the token of a Microsoft 365
    # or Google sign-in of USERNAME's mailbox (oauth_provider; connect it in the console's
    # Mailboxes page or with `smshub mailboxes auth mail_out`).
    auth: Literal["password", "xoauth2"] = "password"
    # The same for method "imap" (imap_auth), and whose sign-in both use.
    imap_auth: Literal["password", "xoauth2"] = "password"
    oauth_provider: Literal["", "microsoft", "google"] = ""
    # The relay password: an environment variable or a file.
    password_env: str | None = None
    password_file: str | None = None
    # From address of mail the hub sends.
    from_address: str = "smshub@localhost"
    # Mailbox for method "imap": the mail is APPENDed to imap_folder (created if missing).
    imap_host: str = ""
    imap_port: int = Field(993, ge=1, le=65535)
    imap_security: Literal["tls", "starttls", "plain"] = "tls"
    imap_username: str = ""
    imap_password_env: str | None = None
    imap_password_file: str | None = None
    imap_folder: str = "SMS"
    # A private CA for the IMAP server's certificate (empty: the system's).
    imap_ca_file: str = ""
    # "smtp": the mail protocols above (relay, or IMAP APPEND). "graph" / "gmail": the
    # provider's mail API instead, for tenants that turned SMTP AUTH / IMAP off; signs in
    # as oauth_provider's mailbox (no host needed): method "smtp" sends the mail (Graph
    # sendMail, Gmail messages.send), method "imap" puts it into imap_folder (Graph: a
    # message created in that folder; Gmail: inserted with that label).
    transport: Literal["smtp", "graph", "gmail"] = "smtp"

    @model_validator(mode="after")
    def _api_provider(self) -> MailOutSection:
        wanted = {"graph": "microsoft", "gmail": "google"}.get(self.transport)
        if wanted and self.oauth_provider != wanted:
            raise ValueError(
                f"'mail_out.transport' = {self.transport!r} signs in with "
                f'{wanted.title()}: set mail_out.oauth_provider = "{wanted}"'
            )
        return self

    @property
    def enabled(self) -> bool:
        """True when the hub can deliver mail at all."""
        if self.transport != "smtp":
            return True
        return bool(self.imap_host if self.method == "imap" else self.host)


class InboundSection(Section):
    # An answer is matched to what the account last sent that number within this many days.
    conversation_window_days: float = Field(30.0, gt=0)
    # Our numbers and the account that owns each, for SMS that answer nothing we sent,
    # e.g. { "+33700000000" = "main" }.
    number_accounts: dict[str, str] = {}
    # Whole-message keywords (case, accents and punctuation ignored) that opt a number out
    # or back in. STOP also matches a message that starts with STOP.
    stop_keywords: list[str] = [
        "STOP",
        "STOP SMS",
        "STOPALL",
        "STOP ALL",
        "ARRET",
        "ARRETER",
        "ARRET SMS",
        "UNSUBSCRIBE",
        "DESABONNER",
        "DESINSCRIRE",
        "END",
        "QUIT",
        "CANCEL",
        "OPTOUT",
    ]
    start_keywords: list[str] = ["START", "UNSTOP", "SUBSCRIBE", "ABONNER", "REPRENDRE"]
    # The one SMS sent after an opt-out or opt-in ({account} is the account's name); empty:
    # the hub's own text in the account's language (hub/inbound/texts.py).
    stop_confirmation: str = ""
    start_confirmation: str = ""
    # Answers to a reminder that confirm or cancel the appointment (whole message, any case,
    # accents and punctuation ignored).
    confirm_keywords: list[str] = ["OUI", "YES", "O", "Y", "JA", "SI", "CONFIRME", "OK"]
    cancel_keywords: list[str] = ["NON", "NO", "N", "NEIN", "ANNULE", "ANNULER"]


class LinksSection(Section):
    # Largest file (API upload, CLI upload or mail attachment) hosted behind a short link,
    # in bytes; larger ones are refused with the limit in the message.
    max_file_size: int = Field(5 * 1024 * 1024, ge=1024)
    # Requests to /s/CODE per client address per minute (counted in the database, so across
    # every instance); more are answered 429 with Retry-After.
    requests_per_minute: int = Field(60, ge=1)


class ContactsSection(Section):
    # Largest contact file (CSV, TXT, XLS, XLSX) the console or the API takes in one import,
    # in bytes, and the most rows one import reads; larger files are refused with the
    # setting's name in the message (split them, or raise the limit).
    max_import_size: int = Field(10 * 1024 * 1024, ge=1024)
    max_import_rows: int = Field(100_000, ge=1)


class RoutingSection(Section):
    # Providers tried in order for every account that sets no route of its own.
    default: list[str] = ["simulator"]


class GoogleOAuthSection(Section):
    # The OAuth client behind the console's "Connect Google" button: a "Web application"
    # client (Google Cloud console → APIs & Services → Credentials) of a project with the
    # Calendar API enabled, whose redirect URI is HUB.PUBLIC_URL/console/calendars/oauth/callback.
    # Empty: no button (connect with `smshub calendars auth google` instead).
    client_id: str = ""
    # Its secret: an environment variable (client_secret_env) or a file (client_secret_file).
    client_secret_env: str = ""
    client_secret_file: str = ""
    # Google's consent page and token endpoint.
    auth_url: str = "https://accounts.google.com/o/oauth2/auth"
    token_url: str = "https://oauth2.googleapis.com/token"
    # Root of the Calendar API; empty: Google's.
    api_url: str = ""
    # Root of the Gmail API (mailboxes with transport = "gmail"); tests point it elsewhere.
    gmail_url: str = "https://gmail.googleapis.com"


class MicrosoftOAuthSection(Section):
    # The app registration behind the console's "Connect Microsoft 365" button (Entra ID →
    # App registrations), a "Web" platform with the redirect URI
    # HUB.PUBLIC_URL/console/calendars/oauth/callback, a client secret and the delegated
    # permission Calendars.ReadWrite. Empty: no button.
    client_id: str = ""
    client_secret_env: str = ""
    client_secret_file: str = ""
    # Directory (tenant) ID or domain; "common" for any work or personal account.
    tenant: str = "common"
    # Sign-in service (its token endpoint is AUTHORITY/TENANT/oauth2/v2.0/token) and Graph root.
    authority: str = "https://login.microsoftonline.com"
    graph_url: str = "https://graph.microsoft.com/v1.0"
    # CA bundle to trust for both (a TLS-inspecting proxy); empty: the system's.
    ca_file: str = ""


class CalendarOAuthSection(Section):
    google: GoogleOAuthSection = GoogleOAuthSection()
    microsoft: MicrosoftOAuthSection = MicrosoftOAuthSection()


class CalendarsSection(Section):
    # Worker processes that sync calendars (read the source, plan the reminders) beside the
    # hub's process, started at the first sync that needs one (hub/reminders/workers.py).
    # A first sync of many appointments is CPU work: in the hub's process it takes one core
    # and the GIL. Worth it for many or large calendars; each worker holds about as much
    # memory as the hub's process, and their forkserver ~90 MB. 0: syncs run in the hub's
    # process (one calendar at a time on SQLite, two on PostgreSQL).
    sync_processes: int = Field(0, ge=0, le=32)


class OpsSection(Section):
    # The operations port of every role: /livez, /readyz and /metrics (the api role keeps
    # /healthz on its own port too). Port 0 turns it off.
    host: str = "127.0.0.1"
    port: int = Field(9025, ge=0, le=65535)


class LogSection(Section):
    # "text": one line per record with a time stamp; "json": one JSON object per line.
    format: Literal["text", "json"] = "text"


class Config(Section):
    hub: HubSection = HubSection()
    database: DatabaseSection = DatabaseSection()
    http: HttpSection = HttpSection()
    api: ApiSection = ApiSection()
    sending: SendingSection = SendingSection()
    dispatcher: DispatcherSection = DispatcherSection()
    routing: RoutingSection = RoutingSection()
    smtp: SmtpSection = SmtpSection()
    dns: DnsSection = DnsSection()
    mail_out: MailOutSection = MailOutSection()
    console: ConsoleSection = ConsoleSection()
    inbound: InboundSection = InboundSection()
    links: LinksSection = LinksSection()
    contacts: ContactsSection = ContactsSection()
    calendars: CalendarsSection = CalendarsSection()
    ops: OpsSection = OpsSection()
    log: LogSection = LogSection()
    # OAuth clients of the console's "Connect Google / Microsoft 365" buttons.
    calendar_oauth: CalendarOAuthSection = CalendarOAuthSection()
    # When marketing SMS may go out, in the recipient's local time.
    marketing_hours: MarketingHours = MarketingHours()
    # The opt-out mention appended to marketing SMS from a named sender.
    optout_mention: OptOutMention = OptOutMention()
    # Which opt-out mention each destination country gets (STOP number, web link, none).
    compliance: OptOutRules = OptOutRules()
    # One table per provider: [providers.NAME] with type = "simulator" | "kannel" | ...
    providers: dict[str, dict[str, Any]] = {"simulator": {"type": "simulator"}}
    # Mailboxes whose mail becomes SMS: [[imap]] tables, validated by the IMAP connector
    # at start (errors name imap[N].key); see config.example.toml.
    imap: list[dict[str, Any]] = []
    # Where this configuration came from (not a config key).
    source: str = Field("embedded defaults", exclude=True)

    @property
    def database_url(self) -> str:
        """The effective database URL (env, file, or SQLite in the data dir)."""
        url = os.environ.get(DATABASE_ENV) or self.database.url
        if not url:
            return f"sqlite:///{(self.hub.data_dir / 'smshub.db').as_posix()}"
        if url.startswith("postgresql://"):
            url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
        return url


SEE_EXAMPLE = " (see config.example.toml for the options)"


def config_error(
    exc: ValidationError,
    *,
    name: Callable[[str], str] = str,
    unknown: str = "unknown key",
    hint: str = "",
    line_prefix: str = "",
    sep: str = "\n",
    strip_value_error: bool = False,
) -> ConfigError:
    """EXC as a ConfigError naming every bad key, one line (or SEP-joined part) each.

    NAME turns a key's dotted path into the name shown (e.g. with its section), UNKNOWN
    names a key the model does not know, HINT follows it, LINE_PREFIX starts every line
    (the file), and STRIP_VALUE_ERROR drops pydantic's "Value error, " from a validator's
    message. The config file, providers, calendars and mailboxes each keep their wording."""
    lines = []
    for err in exc.errors():
        key = name(".".join(str(p) for p in err["loc"]))
        if err["type"] == "extra_forbidden":
            lines.append(f"{line_prefix}{unknown} '{key}'{hint}")
        else:
            msg = err["msg"].removeprefix("Value error, ") if strip_value_error else err["msg"]
            lines.append(f"{line_prefix}'{key}': {msg}")
    return ConfigError(sep.join(lines))


def parse_config(data: dict[str, Any], source: str = "config") -> Config:
    """Validate a config mapping; raise ConfigError naming every bad key."""
    _refuse_old_relay_form(data, source)
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        raise config_error(exc, hint=SEE_EXAMPLE, line_prefix=f"{source}: ") from None
    config.source = source
    for name, section in config.providers.items():
        if not isinstance(section, dict) or "type" not in section:
            raise ConfigError(f"{source}: 'providers.{name}.type' is missing (e.g. \"simulator\")")
    for name in config.routing.default:
        if name not in config.providers:
            raise ConfigError(
                f"{source}: 'routing.default' names provider {name!r}, "
                f"but there is no [providers.{name}] section"
            )
    return config


def _refuse_old_relay_form(data: dict[str, Any], source: str) -> None:
    """An authserv-id alone (the 0.1 form) no longer makes a relay trusted: say how to write
    that entry now, since the relay's network is something only its operator knows."""
    smtp = data.get("smtp")
    relays = smtp.get("trusted_relays") if isinstance(smtp, dict) else None
    if not isinstance(relays, list):
        return
    for index, entry in enumerate(relays):
        if isinstance(entry, str):
            raise ConfigError(
                f"{source}: 'smtp.trusted_relays.{index}' is {entry!r} alone, the old form: a "
                "relay is now trusted by the network it connects from, not by the name it "
                f'writes. Write it as {{authserv_id = "{entry}", networks = ["192.0.2.25/32"]}} '
                "with the address(es) (CIDR) your relay sends from"
            )


def load_config(path: str | os.PathLike[str] | None = None) -> Config:
    """Load PATH, else $SMSHUB_CONFIG, else the embedded defaults."""
    chosen = path or os.environ.get(CONFIG_ENV)
    if not chosen:
        return parse_config({}, "embedded defaults")
    file = Path(chosen)
    try:
        raw = file.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read config file {file}: {exc.strerror}") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{file}: not valid TOML: {exc}") from None
    config = parse_config(data, str(file))
    if not config.hub.data_dir.is_absolute():
        # Relative paths in a config file are relative to the file, not to the shell's cwd.
        config.hub.data_dir = (file.parent / config.hub.data_dir).resolve()
    return config


def read_secret(section: dict[str, Any] | BaseModel, key: str, where: str) -> str | None:
    """Resolve ``KEY_env`` / ``KEY_file`` options to the secret's value (None when unset)."""
    values = section if isinstance(section, dict) else section.model_dump()
    env_name = values.get(f"{key}_env")
    file_name = values.get(f"{key}_file")
    if env_name:
        value = os.environ.get(env_name)
        if value is None:
            raise ConfigError(
                f"'{where}.{key}_env' names the environment variable {env_name}, which is not set"
            )
        return value
    if file_name:
        try:
            return Path(file_name).read_text("utf-8").strip()
        except OSError as exc:
            raise ConfigError(
                f"'{where}.{key}_file': cannot read {file_name}: {exc.strerror}"
            ) from None
    return None


def require_secret(section: dict[str, Any] | BaseModel, key: str, where: str, what: str) -> str:
    """Like read_secret, but a missing secret is a ConfigError saying how to give it."""
    value = read_secret(section, key, where)
    if not value:
        raise ConfigError(
            f"'{where}': {what} is missing; set {key}_env (an environment variable holding "
            f"it) or {key}_file (a file holding it)"
        )
    return value
