"""`smshub campaigns ...`: personalised sends to lists, now or scheduled; reports and exports."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from hub.cli.common import (
    AccountOpt,
    JsonOpt,
    OutputOpt,
    SendAtOpt,
    SenderOpt,
    emit,
    fail,
    get_config,
    run_db,
    run_on_account,
    send_time,
    table,
    text_arg,
    write_or_print,
)
from hub.cli.templates import show_preview

campaigns_app = typer.Typer(
    help="Personalised sends to lists, now or scheduled; reports and exports.",
    no_args_is_help=True,
)


@campaigns_app.command("create")
def campaigns_create(
    name: str,
    list_names: Annotated[
        list[str] | None, typer.Option("--list", help="A contact list; repeatable.")
    ] = None,
    to: Annotated[list[str] | None, typer.Option("--to", help="A number; repeatable.")] = None,
    text: Annotated[str | None, typer.Option(help="The text ('-' reads stdin).")] = None,
    template: Annotated[str | None, typer.Option(help="A saved template instead.")] = None,
    type_: Annotated[str, typer.Option("--type", help="marketing or alert.")] = "marketing",
    at: SendAtOpt = None,
    sender: SenderOpt = None,
    preview: Annotated[
        bool, typer.Option("--preview", help="Show each recipient's text and cost; send nothing.")
    ] = False,
    track_links: Annotated[
        bool | None,
        typer.Option(
            "--track-links/--no-track-links",
            help="Replace each URL by a short link of each recipient's own, to see who "
            "clicked (default: the account's setting, `smshub accounts set --track-links`).",
        ),
    ] = None,
    account: AccountOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Create a campaign: one personalised SMS per recipient, charged at once."""
    from hub.campaigns.campaigns import create_campaign

    send_at = send_time(at)
    body = text_arg(text) if text is not None else None
    if (body is None) == (template is None):
        fail("give the campaign --text or --template (one of them)")
    if preview:
        show_preview(account, template, body, list_names, to, type_, sender, track_links, as_json)
        if not as_json:
            typer.echo("preview only: nothing was sent")
        return
    config = get_config()
    result = run_on_account(
        account,
        lambda s, acc: create_campaign(
            s,
            config,
            acc,
            name,
            text=body,
            template=template,
            lists=list_names or [],
            numbers=to or [],
            type=type_,
            sender=sender,
            send_at=send_at,
            track_links=track_links,
        ),
    )
    data = result.to_dict()
    if as_json:
        emit(data, True)
    else:
        _print_campaign(data)


def _print_campaign(data: dict[str, Any]) -> None:
    when = f"scheduled for {data['send_at']}" if data["status"] == "scheduled" else "sending"
    typer.echo(
        f"campaign {data['id']} {data['name']!r}: {data['recipients']} SMS, "
        f"{data['credits']} credits, {when}; balance {data['balance_after']}"
    )
    if data["track_links"]:
        typer.echo("links: a short link per recipient (clicks in `smshub campaigns report`)")
    for r in data["rejected"]:
        typer.echo(f"  {r['input']} left out ({r['reason']})")
    for w in data["warnings"]:
        typer.echo(f"warning: {w}")


@campaigns_app.command("list")
def campaigns_list(account: AccountOpt = None, as_json: JsonOpt = False) -> None:
    """Campaigns, newest first."""
    from hub.campaigns.campaigns import list_campaigns

    data = run_db(lambda s: list_campaigns(s, account))
    emit(
        data,
        as_json,
        table(
            [
                [
                    d["id"],
                    d["name"][:30],
                    d["status"],
                    (d["send_at"] or d["created_at"])[:19],
                    d["recipients"],
                    d["credits"],
                ]
                for d in data
            ],
            ["ID", "NAME", "STATUS", "AT (UTC)", "SMS", "CREDITS"],
        )
        if data
        else "no campaigns yet; create one with `smshub campaigns create`",
    )


@campaigns_app.command("report")
@campaigns_app.command("show")
def campaigns_show(campaign_id: int, account: AccountOpt = None, as_json: JsonOpt = False) -> None:
    """The campaign report: messages by status, credits, clicks (unique clickers, click
    rate, first click, devices and systems; link previews counted apart), and who opted out
    since (STOP reply, unsubscribe link) with the date."""
    from hub.campaigns.campaigns import campaign_report

    data = run_db(lambda s: campaign_report(s, campaign_id, account))
    lines = [
        f"campaign {data['id']} {data['name']!r} ({data['account']}): {data['status']}",
        f"type {data['type']}, sender {data['sender'] or '(default)'}, "
        f"send at {data['send_at'] or data['created_at']}",
        f"{data['recipients']} SMS: "
        + ", ".join(f"{n} {s}" for s, n in data["counts"].items() if n),
        f"credits: {data['credits_charged']} charged, {data['credits_refunded']} refunded, "
        f"{data['credits_net']} net",
        *_click_lines(data),
        f"opted out since: {data['opted_out']} recipient(s)",
        *(f"  {o['number']} STOP {o['stop_at']} ({o['source']})" for o in data["opt_outs"]),
        "text: " + data["text"],
    ]
    emit(data, as_json, "\n".join(lines))


def _click_lines(data: dict[str, Any]) -> list[str]:
    """The click part of `smshub campaigns report`."""
    if not data["track_links"] and not data["clicks"] and not data["bot_clicks"]:
        return ["clicks: not tracked (create the campaign with --track-links)"]
    lines = [
        f"clicks: {data['clicks']} by {data['unique_clickers']} recipient(s), click rate "
        f"{data['click_rate']:.1%}, first click {data['first_click_at'] or '-'}"
    ]
    for key, label in (("devices", "devices"), ("os", "systems"), ("browsers", "browsers")):
        if data[key]:
            lines.append(
                f"  {label}: "
                + ", ".join(f"{d['name']} {d['clicks']} ({d['clickers']})" for d in data[key])
            )
    if data["bot_clicks"]:
        lines.append(
            f"  link previews and bots (not counted): {data['bot_clicks']} ("
            + ", ".join(f"{d['name']} {d['clicks']}" for d in data["bots"])
            + ")"
        )
    return lines


@campaigns_app.command("cancel")
def campaigns_cancel(
    campaign_id: int, account: AccountOpt = None, as_json: JsonOpt = False
) -> None:
    """Cancel a campaign that has not started sending; its credits are refunded."""
    from hub.campaigns.campaigns import cancel_campaign

    data = run_db(lambda s: cancel_campaign(s, campaign_id, account))
    emit(
        data,
        as_json,
        f"campaign {campaign_id} cancelled: {data['cancelled']} SMS, "
        f"{data['credits_refunded']} credits refunded",
    )


@campaigns_app.command("export")
def campaigns_export(
    campaign_id: int,
    output: OutputOpt = None,
    account: AccountOpt = None,
) -> None:
    """Per-recipient CSV: number, status, reason, parts, credits, times, clicks, text, and
    the STOP date of those who opted out since."""
    from hub.campaigns.campaigns import export_campaign

    data = run_db(lambda s: export_campaign(s, campaign_id, account))
    write_or_print(data, output, f"campaign {campaign_id}")
