"""The key that encrypts the secrets the hub keeps in its database (console-entered
passwords, OAuth refresh tokens), with ``cryptography``'s Fernet (AES-128-CBC + HMAC-SHA256,
a maintained, audited format) and MultiFernet for rotation.

Where the keys come from, first found wins:

1. ``SMSHUB_SECRET_KEY``: one or more Fernet keys separated by commas;
2. ``[hub] secret_key_file``: a file holding one key per line;
3. neither: ``DATA_DIR/secret.key``, generated on first use (mode 0600) with a warning, so
   one machine works out of the box. Several instances must share one key: set 1 or 2.

The first key encrypts; every key decrypts. Rotation: put a new key (``smshub secrets
new-key``) first and the old ones after it, restart every instance, run ``smshub secrets
rotate`` (re-encrypts every stored secret under the first key), then drop the old keys.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from hub.core.config import Config
from hub.errors import ConfigError, SecretUnreadable

log = logging.getLogger("smshub.secrets")

__all__ = ["KEY_ENV", "Keyring", "SecretUnreadable", "load_keyring", "new_key"]

KEY_ENV = "SMSHUB_SECRET_KEY"
GENERATED_NAME = "secret.key"


def new_key() -> str:
    """A fresh Fernet key (url-safe base64 of 32 random bytes)."""
    return Fernet.generate_key().decode()


@dataclass(frozen=True)
class Keyring:
    """The hub's secret keys (the first encrypts) and where they came from, for messages."""

    keys: tuple[str, ...]
    source: str  # "SMSHUB_SECRET_KEY", "the key file /etc/smshub/secret.key", ...

    def __post_init__(self) -> None:
        if not self.keys:
            raise ConfigError(f"{self.source} holds no key")
        for index, key in enumerate(self.keys, 1):
            try:
                Fernet(key)
            except (ValueError, TypeError):
                raise ConfigError(
                    f"{self.source}: key {index} is not a Fernet key (44 characters of url-safe "
                    "base64; make one with `smshub secrets new-key`)"
                ) from None

    @property
    def _fernet(self) -> MultiFernet:
        return MultiFernet([Fernet(k) for k in self.keys])

    def encrypt(self, value: str) -> str:
        return self._fernet.encrypt(value.encode("utf-8")).decode("ascii")

    def decrypt(self, token: str, what: str = "secret") -> str:
        """TOKEN's plain text; SecretUnreadable saying which key to set when none fits."""
        try:
            return self._fernet.decrypt(token.encode("ascii")).decode("utf-8")
        except (InvalidToken, UnicodeError, ValueError):
            raise SecretUnreadable(
                f"{what} could not be decrypted: {self.source} differs from the one that "
                f"stored it; give this instance the same key as the others ({KEY_ENV} or "
                "[hub] secret_key_file, old keys after the new one), or enter the secret again"
            ) from None

    def rotate(self, token: str, what: str = "secret") -> str:
        """TOKEN re-encrypted under the first key (SecretUnreadable when no key fits)."""
        try:
            return self._fernet.rotate(token.encode("ascii")).decode("ascii")
        except (InvalidToken, ValueError):
            self.decrypt(token, what)  # raises with the explanation
            raise


def _split(text: str) -> tuple[str, ...]:
    return tuple(k.strip() for k in text.replace(",", "\n").splitlines() if k.strip())


def load_keyring(config: Config) -> Keyring:
    """The keys of this instance (see the module's docstring); ConfigError when unusable."""
    from_env = os.environ.get(KEY_ENV)
    if from_env is not None:
        return Keyring(_split(from_env), KEY_ENV)
    named = config.hub.secret_key_file
    if named:
        path = Path(named)
        try:
            return Keyring(_split(path.read_text("utf-8")), f"the key file {path}")
        except OSError as exc:
            raise ConfigError(
                f"'hub.secret_key_file': cannot read {path}: {exc.strerror}"
            ) from None
    return _generated(config.hub.data_dir / GENERATED_NAME)


def _generated(path: Path) -> Keyring:
    """The key in PATH, created (0600, never readable by others) when there is none."""
    source = f"the generated key file {path}"
    try:
        return Keyring(_split(path.read_text("utf-8")), source)
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return Keyring(_split(path.read_text("utf-8")), source)  # another process won
    with os.fdopen(fd, "w", encoding="ascii") as out:
        out.write(new_key() + "\n")
    log.warning(
        "generated the key that encrypts stored secrets in %s: keep it with your backups; "
        "for several instances set %s (or [hub] secret_key_file) to the same key on each",
        path,
        KEY_ENV,
    )
    return Keyring(_split(path.read_text("utf-8")), source)
