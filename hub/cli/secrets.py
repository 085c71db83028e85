"""`smshub secrets ...`: the key that encrypts the secrets the hub keeps in its database."""

from __future__ import annotations

import typer

from hub.cli.common import JsonOpt, emit, get_config, get_engine
from hub.store.secretbox import KEY_ENV, load_keyring, new_key
from hub.store.state_sql import rotate_secrets

secrets_app = typer.Typer(
    help=(
        "The key that encrypts secrets kept in the database (console-entered passwords, "
        f"OAuth refresh tokens). The keys come from {KEY_ENV} (comma-separated), else the "
        "file named by hub.secret_key_file in the config (one per line), else DATA_DIR/secret.key "
        "(generated; one machine only). The first key encrypts, all decrypt. To rotate: "
        "`smshub secrets new-key`, put it FIRST and the old keys after it on every "
        "instance, restart them, run `smshub secrets rotate`, then remove the old keys."
    ),
    no_args_is_help=True,
)


@secrets_app.command("new-key")
def secrets_new_key() -> None:
    """Print a new random key (Fernet, 32 bytes): keep it secret, put it first."""
    typer.echo(new_key())


@secrets_app.command("rotate")
def secrets_rotate(
    as_json: JsonOpt = False,
) -> None:
    """Re-encrypt every stored secret under the first key, so the old keys can be removed.

    A secret none of the keys decrypts is listed (exit code 1): give this command the key
    that stored it (after the first), or enter that secret again.
    """

    config = get_config()
    keyring = load_keyring(config)
    report = rotate_secrets(get_engine(), keyring)
    data = {
        "rotated": report.rotated,
        "key_source": keyring.source,
        "unreadable": [{"namespace": n, "key": k} for n, k in report.unreadable],
    }
    lines = [
        f"re-encrypted {report.rotated} stored secret(s) under the first key of {keyring.source}"
    ]
    lines += [
        f"  cannot decrypt {k} of {n}: no key of {keyring.source} fits; add the key that "
        "stored it after the first, or enter it again"
        for n, k in report.unreadable
    ]
    emit(data, as_json, "\n".join(lines))
    if report.unreadable:
        raise typer.Exit(1)
