"""Console page /console/intake: the account's intake addresses (and, via settings_users,
its users): add an address, edit its allowed senders, remove it; and the mails intake
refused lately, with why."""

# No `from __future__ import annotations`: FastAPI reads these annotations at runtime.

from typing import Annotated, Any

from fastapi import APIRouter, Form
from fastapi.responses import HTMLResponse, Response
from sqlalchemy import update
from sqlmodel import Session, col, select

from hub.console.actions import on_account, on_row, settings_page
from hub.console.auth import ConsoleUser
from hub.console.page import Page
from hub.console.render import redirect
from hub.console.settings_common import back_to, layout
from hub.core.config import Config
from hub.core.i18n import gettext as _
from hub.core.i18n import ngettext
from hub.errors import ConflictError, InvalidInput
from hub.mail.intake import refusals
from hub.mail.intake.addresses import add_intake_address, split_address
from hub.store.models import Account, InboundMail, IntakeAddress, IntakeKind, MailUser
from hub.web.edge import RowId

router = APIRouter()
PATH = "/console/intake"
# Refused mails listed, newest first (kept for refusals.RETENTION).
REFUSED_SHOWN = 50


def allowed_senders(text: str) -> list[str]:
    """The allowed-senders text area, one address or @domain a line, checked line by line."""
    found: list[str] = []
    for number, entry in enumerate(text.splitlines(), start=1):
        entry = entry.strip().lower()
        if not entry:
            continue
        try:
            local, domain = split_address(entry)
        except InvalidInput:
            local, domain = "", ""
        if not domain or (not local and not entry.startswith("@")):
            raise InvalidInput(
                f"allowed senders, line {number}: {entry!r} is neither an address "
                "(name@example.com) nor a domain (@example.com)"
            )
        if entry not in found:
            found.append(entry)
    return found


def _check_domain(session: Session, user: ConsoleUser, config: Config, domain: str) -> None:
    """Refuse a domain that is not the user's to claim.

    Intake addresses are global: without this, any customer could take an address on
    another customer's domain (or the hub's reply domain) and receive mail meant for it.
    """
    reply_domain = config.smtp.reply_domain.lower().rstrip(".")
    if reply_domain and domain == reply_domain:
        raise InvalidInput(
            f"{domain} is the hub's reply domain (answers to forwarded SMS arrive there); "
            "choose another domain"
        )
    others = session.exec(
        select(IntakeAddress.id).where(
            IntakeAddress.domain == domain, col(IntakeAddress.account_id).not_in(user.scope)
        )
    ).first()
    if others is not None:
        raise ConflictError(
            f"{domain} is used by another customer's intake addresses; ask the hub "
            "administrator (`smshub mail address`) if it should be yours"
        )


def _context(session: Session, user: ConsoleUser, account: Account) -> dict[str, Any]:
    addresses = session.exec(
        select(IntakeAddress)
        .where(IntakeAddress.account_id == account.id)
        .order_by(col(IntakeAddress.domain), col(IntakeAddress.local_part))
    ).all()
    users = session.exec(
        select(MailUser).where(MailUser.account_id == account.id).order_by(col(MailUser.username))
    ).all()
    assert account.id is not None
    return {
        **layout(session, user, account, PATH),
        "addresses": addresses,
        "users": users,
        "me": user.user_id,
        "refused": refusals.recent(session, [account.id], REFUSED_SHOWN),
    }


@router.get("/intake", response_class=HTMLResponse)
async def intake_page(ui: Page, account: str = "") -> Response:
    """Intake addresses and account users."""

    def _load(session: Session, acc: Account) -> dict[str, Any]:
        return {
            **_context(session, ui.user, acc),
            "confirmations": ui.hub.config.smtp.confirmations,
        }

    return await settings_page(ui, account, "settings_intake.html.j2", _load)


@router.post("/intake/addresses")
async def address_add(
    ui: Page,
    account: Annotated[str, Form()] = "",
    kind: Annotated[str, Form()] = IntakeKind.SUBJECT.value,
    address: Annotated[str, Form()] = "",
    senders: Annotated[str, Form()] = "",
    require_auth: Annotated[bool, Form()] = False,
    pin: Annotated[str, Form()] = "",
    confirm: Annotated[bool, Form()] = False,
    sender: Annotated[str, Form()] = "",
) -> Response:
    """Make an address (or a number-in-address domain) send SMS on the account."""
    address = address.strip().lower()
    if kind == IntakeKind.NUMBER_ADDRESS.value:
        domain = address.rpartition("@")[2]
        if not domain or "." not in domain:
            raise InvalidInput(f"{address!r} is not a domain (e.g. sms.example.com)")
        address = "*@" + domain
    elif kind == IntakeKind.SUBJECT.value:
        if address.startswith("*@"):
            raise InvalidInput("for numbers in the address, choose that kind and give the domain")
        domain = split_address(address)[1]
    else:
        raise InvalidInput("kind must be subject or number_address")
    allowed = allowed_senders(senders)
    pin = pin.strip()
    sender = sender.strip()
    if len(sender) > 16:
        raise InvalidInput("the SMS sender must have at most 16 characters")

    def _add(session: Session, acc: Account) -> str:
        _check_domain(session, ui.user, ui.hub.config, domain)
        add_intake_address(
            session,
            acc.name,
            address,
            allowed_senders=allowed,
            require_auth=require_auth,
            pin=pin or None,
            confirm=confirm,
            sender=sender or None,
        )
        return back_to(PATH, ui.user, acc)

    url = await on_account(ui, account, _add)
    return redirect(url, _("Mail to %(address)s now sends SMS.", address=address))


@router.post("/intake/addresses/{address_id}/senders")
async def address_senders(
    ui: Page,
    address_id: RowId,
    senders: Annotated[str, Form()] = "",
) -> Response:
    """Replace an address's allowed senders."""
    allowed = allowed_senders(senders)

    def _save(session: Session, record: IntakeAddress, _acc: Account) -> None:
        record.allowed_senders = "\n".join(allowed)
        session.add(record)

    _done, url = await on_row(ui, IntakeAddress, address_id, "intake address", PATH, _save)
    count = len(allowed)
    return redirect(
        url,
        ngettext(
            "Allowed senders saved (%(num)d entry).",
            "Allowed senders saved (%(num)d entries).",
            count,
        ),
    )


@router.post("/intake/addresses/{address_id}/remove")
async def address_remove(ui: Page, address_id: RowId) -> Response:
    """Stop taking mail on an address (mail already taken in keeps its SMS)."""

    def _remove(session: Session, record: IntakeAddress, _acc: Account) -> str:
        shown = f"{record.local_part or '*'}@{record.domain}"
        # Past mails keep their row; they only lose the link to the removed address.
        session.execute(
            update(InboundMail)
            .where(col(InboundMail.intake_address_id) == address_id)
            .values(intake_address_id=None)
        )
        session.delete(record)
        return shown

    shown, url = await on_row(ui, IntakeAddress, address_id, "intake address", PATH, _remove)
    return redirect(
        url, _("%(address)s removed: mail to it is refused from now on.", address=shown)
    )
