"""`smshub webhooks ...`: outgoing webhook endpoints and their delivery log."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from hub.cli.common import JsonOpt, emit, fail, get_engine, run_db, table

webhooks_app = typer.Typer(
    help="Outgoing webhooks: signed event notifications to your URLs.", no_args_is_help=True
)


def _endpoint_dict(endpoint: Any, account: str) -> dict[str, Any]:
    return {
        "id": endpoint.id,
        "account": account,
        "url": endpoint.url,
        "events": endpoint.events.split(","),
        "enabled": endpoint.enabled,
        "private_ok": endpoint.private_ok,
        "created_at": endpoint.created_at,
    }


@webhooks_app.command("add")
def webhooks_add(
    account: Annotated[str, typer.Argument(help="The account whose events are sent.")],
    url: Annotated[
        str,
        typer.Argument(
            help="The https:// URL that receives them; any address, localhost and private "
            "networks included."
        ),
    ],
    event: Annotated[
        list[str] | None,
        typer.Option(
            "--event",
            "-e",
            help="An event type to send (repeatable; default: all). "
            "message.delivered, message.failed, inbound.received, optout.created, link.clicked.",
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Register a webhook URL; prints its signing secret once.

    Its URL may point anywhere, the hub's own network included, unlike the web console's.
    """
    from hub.inbound import webhooks

    def _do(session: Any) -> dict[str, Any]:
        endpoint, secret = webhooks.add_endpoint(
            session, account, url, event or ["*"], private_ok=True
        )
        return {**_endpoint_dict(endpoint, account), "secret": secret}

    data = run_db(_do)
    note = ""
    if data["url"].startswith("http://"):
        note = "\nnote: plain http:// sends event data unencrypted; prefer https://"
    emit(
        data,
        as_json,
        f"webhook {data['id']} for account {account}: {data['url']}\n"
        f"events: {', '.join(data['events'])}\n"
        f"signing secret (shown once, keep it safe): {data['secret']}{note}",
    )


@webhooks_app.command("list")
def webhooks_list(
    account: Annotated[str | None, typer.Option(help="Only this account's endpoints.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """List webhook endpoints (never their secrets)."""
    from hub.inbound import webhooks

    def _do(session: Any) -> list[dict[str, Any]]:
        endpoints = webhooks.list_endpoints(session, account)
        names = webhooks.owner_names(session, endpoints)
        return [_endpoint_dict(e, names.get(e.account_id, "?")) for e in endpoints]

    data = run_db(_do)
    text = table(
        [
            [
                d["id"],
                d["account"],
                d["url"],
                ",".join(d["events"]),
                "enabled" if d["enabled"] else "disabled",
            ]
            for d in data
        ],
        ["ID", "ACCOUNT", "URL", "EVENTS", "STATE"],
    )
    emit(data, as_json, text if data else "no webhook endpoints")


@webhooks_app.command("remove")
def webhooks_remove(endpoint_id: int) -> None:
    """Delete an endpoint, its queued deliveries and its delivery log."""
    from hub.inbound import webhooks

    endpoint = run_db(lambda s: webhooks.remove_endpoint(s, endpoint_id))
    typer.echo(f"webhook {endpoint_id} ({endpoint.url}) removed")


@webhooks_app.command("disable")
def webhooks_disable(endpoint_id: int) -> None:
    """Stop sending to an endpoint; its queued deliveries wait until it is enabled."""
    from hub.inbound import webhooks

    run_db(lambda s: webhooks.disable_endpoint(s, endpoint_id, True))
    typer.echo(f"webhook {endpoint_id} disabled")


@webhooks_app.command("enable")
def webhooks_enable(endpoint_id: int) -> None:
    """Send to an endpoint again (also after it answered 410 Gone)."""
    from hub.inbound import webhooks

    run_db(lambda s: webhooks.disable_endpoint(s, endpoint_id, False))
    typer.echo(f"webhook {endpoint_id} enabled")


@webhooks_app.command("log")
def webhooks_log(
    endpoint: Annotated[int | None, typer.Option(help="Only this endpoint's deliveries.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=10000, help="How many, newest first.")] = 50,
    as_json: JsonOpt = False,
) -> None:
    """The delivery log: each event, its endpoint, attempts, last answer and error."""
    from hub.inbound import webhooks

    def _do(session: Any) -> list[dict[str, Any]]:
        if endpoint is not None:
            webhooks.get_endpoint(session, endpoint)
        return [
            {
                "id": d.id,
                "endpoint_id": d.endpoint_id,
                "event_id": d.event_id,
                "event_type": d.event_type,
                "status": d.status,
                "attempts": d.attempts,
                "last_status_code": d.last_status_code,
                "last_error": d.last_error,
                "created_at": d.created_at,
                "next_attempt_at": d.due_at if d.status == "pending" else None,
                "delivered_at": d.delivered_at,
            }
            for d in webhooks.delivery_log(session, endpoint, limit)
        ]

    data = run_db(_do)
    text = table(
        [
            [
                d["id"],
                d["endpoint_id"],
                d["event_type"],
                d["event_id"],
                d["status"],
                d["attempts"],
                d["last_status_code"],
                d["last_error"][:60],
            ]
            for d in data
        ],
        ["ID", "ENDPOINT", "TYPE", "EVENT", "STATUS", "TRIES", "HTTP", "ERROR"],
    )
    emit(data, as_json, text if data else "no deliveries yet")


@webhooks_app.command("test")
def webhooks_test(
    endpoint_id: int,
    queue_only: Annotated[
        bool, typer.Option("--queue-only", help="Leave the ping to the running hub's sender.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Queue a `ping` event for an endpoint and (unless --queue-only) post it now."""
    import asyncio

    from hub.inbound import webhooks

    delivery = run_db(lambda s: webhooks.queue_ping(s, endpoint_id))
    data: dict[str, Any] = {
        "delivery_id": delivery.id,
        "event_id": delivery.event_id,
        "status": delivery.status,
    }
    if queue_only:
        emit(data, as_json, f"ping {delivery.event_id} queued (delivery {delivery.id})")
        return

    async def _send() -> Any:
        sender = webhooks.WebhookSender(get_engine())
        try:
            return await sender.send_now(delivery.id)
        finally:
            await sender.stop()

    row = asyncio.run(_send())
    if row is None:
        emit(data, as_json, f"ping {delivery.event_id} queued (delivery {delivery.id})")
        return
    data.update(
        status=row.status,
        last_status_code=row.last_status_code,
        last_error=row.last_error,
    )
    if row.status == "delivered":
        emit(data, as_json, f"ping {row.event_id} delivered: HTTP {row.last_status_code}")
        return
    if as_json:
        emit(data, as_json)
        raise typer.Exit(1)
    fail(
        f"ping {row.event_id} not delivered: {row.last_error}; "
        f"the hub retries it ({row.status}); see `smshub webhooks log --endpoint {endpoint_id}`"
    )
