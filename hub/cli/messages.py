"""`smshub send` and `smshub messages ...`: queue an SMS, list, show and cancel messages."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from hub.cli.common import (
    JsonOpt,
    SendAtOpt,
    SenderOpt,
    default_account,
    emit,
    fail,
    get_config,
    run_db,
    send_time,
    table,
    text_arg,
)

messages_app = typer.Typer(help="Sent and scheduled messages.", no_args_is_help=True)


def send(
    to: Annotated[list[str], typer.Option("--to", help="Recipient, any format; repeatable.")],
    text: Annotated[str, typer.Option(help="The message; '-' reads standard input.")],
    sender: SenderOpt = None,
    type_: Annotated[str, typer.Option("--type", help="alert (any time) or marketing.")] = "alert",
    at: SendAtOpt = None,
    account: Annotated[str | None, typer.Option(help="Account to send from.")] = None,
    idempotency_key: Annotated[
        str | None,
        typer.Option(
            help="Retrying with the same key never sends twice; the key names one request "
            "(reused with other parameters it is refused) and is remembered for "
            "[sending] idempotency_key_hours.",
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Queue an SMS; the running hub's dispatcher sends it."""
    from hub.sending import submit as sending

    text = text_arg(text)
    send_at = send_time(at)
    if idempotency_key is not None and not 0 < len(idempotency_key) <= 200:
        fail("--idempotency-key must be 1 to 200 characters (as the API's Idempotency-Key)")
    config = get_config()

    def _do(session: Any) -> Any:
        request = sending.SubmitRequest(
            account=account or default_account(session),
            recipients=to,
            text=text,
            sender=sender,
            type=type_,
            send_at=send_at,
            source="cli",
            idempotency_key=f"cli:{idempotency_key}" if idempotency_key else None,
        )
        if idempotency_key:
            _remember_key(session, request, idempotency_key)
        return sending.submit_in(session, config, request)

    result = run_db(_do)
    _print_result(result, as_json)
    if not result.accepted:
        raise typer.Exit(1)


def _remember_key(session: Any, request: Any, key: str) -> None:
    """Record the idempotency KEY of a send; the same key for another request is refused."""
    from hub.sending import idempotency
    from hub.sending.accounts import get_account

    account_id = get_account(session, request.account).id
    assert account_id is not None
    # Recipients as given and in order, as the API's body: another list is another request.
    fields = {
        "to": request.recipients,
        "text": request.text,
        "sender": request.sender,
        "type": request.type,
        "at": request.send_at.isoformat() if request.send_at else None,
    }
    print_ = idempotency.fingerprint("CLI", "send", account_id, fields)
    idempotency.remember_in(session, account_id, key, "cli", print_)


def _print_result(result: Any, as_json: bool) -> None:
    data = result.to_dict()
    if as_json:
        data["id"] = next((r.message_id for r in result.accepted), None)
        emit(data, True)
        return
    for r in result.recipients:
        line = f"{r.input}: {r.status}"
        if r.message_id:
            line += f" {r.message_id}"
        if r.reason:
            line += f" ({r.reason})"
        typer.echo(line)
    typer.echo(
        f"{result.segments} part(s) {result.encoding}, {result.credits_charged} "
        f"credits, balance {result.balance_after}"
    )


@messages_app.command("list")
def messages_list(
    status: Annotated[str | None, typer.Option(help="Only this status.")] = None,
    account: Annotated[str | None, typer.Option()] = None,
    limit: Annotated[int, typer.Option(min=1)] = 50,
    as_json: JsonOpt = False,
) -> None:
    """List recent messages, newest first."""
    from hub.sending.accounts import get_account
    from hub.sending.history import list_messages

    def _do(session: Any) -> list[dict[str, Any]]:
        ids = [get_account(session, account).id or 0] if account else None
        return list_messages(session, account_ids=ids, status=status, limit=limit)

    data = run_db(_do)
    emit(
        data,
        as_json,
        table(
            [
                [
                    d["id"],
                    d["created_at"][:19],
                    d["to"],
                    d["status"],
                    d["reason"] or "",
                    d["text"][:30],
                ]
                for d in data
            ],
            ["ID", "CREATED (UTC)", "TO", "STATUS", "REASON", "TEXT"],
        ),
    )


@messages_app.command("show")
def messages_show(message_id: str, as_json: JsonOpt = False) -> None:
    """Show one message and its history."""
    from hub.sending.history import message_detail

    def _do(session: Any) -> dict[str, Any]:
        return message_detail(session, message_id, hint=" (list them with `smshub messages list`)")

    data = run_db(_do)
    lines = [f"{k}: {v}" for k, v in data.items() if k != "events" and v is not None]
    lines += ["history:"] + [
        f"  {e['at'][:19]}  {e['status']}"
        + (f" ({e['reason']})" if e["reason"] else "")
        + (f" {e['detail']}" if e["detail"] else "")
        for e in data["events"]
    ]
    emit(data, as_json, "\n".join(lines))


@messages_app.command("cancel")
def messages_cancel(message_id: str, as_json: JsonOpt = False) -> None:
    """Cancel a queued or scheduled message; its credits are refunded."""
    from hub.sending import submit as sending
    from hub.store.views import message_view

    data = run_db(lambda s: message_view(sending.cancel(s, message_id)))
    emit(data, as_json, f"message {message_id} cancelled; {data['credits']} credits refunded")
