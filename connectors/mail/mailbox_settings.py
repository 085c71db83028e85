"""The settings of one ``[[imap]]`` table: a mailbox whose mail becomes SMS, read over IMAP
or through a provider's mail API (one model for every transport)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from hub.core.config import SEE_EXAMPLE, config_error
from hub.errors import InvalidInput
from hub.mail.parse.address import split_address


class ImapSourceSettings(BaseModel):
    """One ``[[imap]]`` entry: a mailbox whose mail becomes SMS."""

    model_config = ConfigDict(extra="forbid")

    # A short name for logs and status; default username@host/folder.
    name: str = ""
    # "imap", or the provider's mail API for tenants that turned IMAP off: "graph"
    # (Microsoft 365, with oauth_provider = "microsoft") or "gmail" (Google, "google"); both
    # need auth = "xoauth2" and no host. Folders are Graph folder names or Gmail labels.
    transport: Literal["imap", "graph", "gmail"] = "imap"
    host: str = ""
    # Default: 993 with security = "tls", 143 otherwise.
    port: int | None = Field(None, ge=1, le=65535)
    # "tls" (implicit TLS, IMAPS), "starttls", or "plain" (tests, or a trusted local socket).
    security: Literal["tls", "starttls", "plain"] = "tls"
    username: str
    # "password" (LOGIN), or "xoauth2": SASL XOAUTH2 / OAUTHBEARER with the token of a
    # Microsoft 365 or Google sign-in (connect the mailbox in the console's Mailboxes page or
    # with `smshub mailboxes auth`; the tokens are kept encrypted in the database).
    auth: Literal["password", "xoauth2"] = "password"
    oauth_provider: Literal["microsoft", "google"] | None = None
    # The mailbox password: an environment variable or a file holding it.
    password_env: str | None = None
    password_file: str | None = None
    # The folder to read, and where handled mail goes (created when missing).
    folder: str = "INBOX"
    processed_folder: str = "Processed"
    failed_folder: str = "Failed"
    # Mail found here is taken as if it had been sent to this intake address.
    intake_address: str
    # The authserv-id(s) of this mailbox's mail server: its topmost Authentication-Results
    # vouch for allowed senders (it is the relay here). Empty: the hub checks DKIM itself.
    trusted_authserv_id: list[str] = []

    # Wait for new mail with IDLE; without it (or if the server refuses it) poll.
    idle: bool = True
    poll_interval: float = Field(60.0, gt=0)
    # Messages fetched per FETCH.
    batch_size: int = Field(50, ge=1, le=1000)
    # Check the server's certificate (against ca_file if given, else the system CAs).
    verify_certificate: bool = True
    ca_file: str = ""
    # Seconds to wait for the server to connect or answer a command.
    timeout: float = Field(30.0, gt=0)
    # First delay before a mail answered 4xx is tried again (doubles, up to an hour).
    retry_backoff: float = Field(60.0, gt=0)

    @field_validator("trusted_authserv_id", mode="before")
    @classmethod
    def _ids(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("intake_address")
    @classmethod
    def _address(cls, value: str) -> str:
        try:
            split_address(value)
        except InvalidInput as exc:
            raise ValueError(str(exc)) from None
        return value.strip().strip("<>")

    @model_validator(mode="after")
    def _consistent(self) -> ImapSourceSettings:
        api_provider = {"graph": "microsoft", "gmail": "google"}.get(self.transport)
        if api_provider is not None:
            if self.auth != "xoauth2" or self.oauth_provider != api_provider:
                raise ValueError(
                    f'transport = "{self.transport}" signs in by OAuth: set auth = "xoauth2" '
                    f'and oauth_provider = "{api_provider}"'
                )
        elif not self.host:
            raise ValueError('set host (the IMAP server), or transport = "graph" / "gmail"')
        if self.auth == "xoauth2":
            if self.oauth_provider is None:
                raise ValueError('auth = "xoauth2" needs oauth_provider = "microsoft" or "google"')
        elif not (self.password_env or self.password_file):
            raise ValueError("set password_env or password_file (the mailbox password)")
        if self.folder in (self.processed_folder, self.failed_folder):
            raise ValueError(
                "processed_folder and failed_folder must differ from folder, "
                "or handled mail would be read again"
            )
        return self

    @property
    def effective_port(self) -> int:
        return self.port or (993 if self.security == "tls" else 143)

    @property
    def label(self) -> str:
        return self.name or f"{self.username}@{self.host or self.transport}/{self.folder}"

    @classmethod
    def from_config(cls, data: dict[str, Any], where: str = "imap") -> ImapSourceSettings:
        """Validate one ``[[imap]]`` table; raise ConfigError naming each bad key."""
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise config_error(
                exc,
                name=lambda key: f"{where}.{key}" if key else where,
                hint=SEE_EXAMPLE,
                strip_value_error=True,
            ) from None
