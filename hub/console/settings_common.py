"""Shared pieces of the account settings pages: account choice, scoped rows, number search."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, TypeVar
from urllib.parse import urlencode

import phonenumbers
from fastapi import Depends
from sqlmodel import Session, select

from hub.core import phone
from hub.errors import InvalidInput, NotFound
from hub.store.db import read_scope

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from hub.console.auth import ConsoleUser
    from hub.core.config import Config
    from hub.store.models import Account

Row = TypeVar("Row")


def page_url(path: str, **params: Any) -> str:
    """PATH with the non-empty PARAMS as its query string."""
    query = urlencode({k: v for k, v in params.items() if v not in (None, "")})
    return f"{path}?{query}" if query else path


def back_to(path: str, user: ConsoleUser, account: Account) -> str:
    """PATH for ACCOUNT (the user's own account needs no ?account=)."""
    return page_url(path, account=None if account.id == user.account_id else account.name)


def owned(session: Session, model: type[Row], row_id: int, user: ConsoleUser, what: str) -> Row:
    """Row ROW_ID of MODEL if it belongs to one of the user's accounts.

    Rows of other customers are reported exactly like missing ones, so their ids cannot be
    probed.
    """
    row = session.get(model, row_id)
    if row is None or getattr(row, "account_id", None) not in user.scope:
        raise NotFound(f"no {what} {row_id} among your accounts")
    return row


def scoped_account_id(engine: Engine, user: ConsoleUser, name: str) -> int:
    """The id of account NAME (default: the user's own) if the user may see it; checked
    before a form's other fields, so another customer's account is refused whatever they
    hold (NotFound, like a missing account)."""
    with read_scope(engine) as session:
        account_id = user.account(session, name or None).id
    assert account_id is not None
    return account_id


def layout(session: Session, user: ConsoleUser, account: Account, here: str) -> dict[str, Any]:
    """What settings_layout.html.j2 needs: the account shown and those one may switch to."""
    return {
        "accounts": [a.name for a in user.accounts(session)],
        "account_name": account.name,
        # Carried in the sub-navigation's links when it is not the user's own account.
        "nav_account": None if account.id == user.account_id else account.name,
        "here": here,
        "self_url": back_to(here, user, account),
    }


@dataclass(frozen=True)
class NumberRange:
    """One stored number (E.164) when EXACT, else every number in [low, high)."""

    low: str
    high: str | None
    exact: bool = False

    def where(self, column: Any) -> list[Any]:
        """Conditions on COLUMN (a number column) for this range."""
        if self.exact:
            return [column == self.low]
        conditions = [column >= self.low]
        if self.high is not None:
            conditions.append(column < self.high)
        return conditions


def _after_prefix(prefix: str) -> str | None:
    """The smallest digit string after every string starting with PREFIX ('+3369' → '+337').

    Carrying over 9s (rather than appending a character after '9') keeps the bound a plain
    number, which every collation orders the same way.
    """
    digits = prefix.rstrip("9")
    if digits in ("", "+"):
        return None
    return digits[:-1] + str(int(digits[-1]) + 1)


def number_range(query: str, region: str) -> NumberRange | None:
    """What a search box for numbers means: a whole number, or the start of one.

    ``06 12`` in France means numbers starting with +33612; ``+4478``, ``004478`` and
    ``4478`` all mean +4478. Ranges (not LIKE) keep the (account, number) index usable on
    PostgreSQL whatever the collation.
    """
    query = query.strip()
    if not query:
        return None
    info = phone.parse_number(query, region)
    if info.valid and info.e164:
        return NumberRange(info.e164, None, exact=True)
    digits = "".join(c for c in query if c.isdigit())
    if not digits or any(c.isalpha() for c in query):
        raise InvalidInput(f"search {query!r}: type a phone number or its first digits")
    if query.startswith("+"):
        prefix = "+" + digits
    elif digits.startswith("00"):
        prefix = "+" + digits[2:]
    elif digits.startswith("0") and phonenumbers.country_code_for_region(region):
        prefix = f"+{phonenumbers.country_code_for_region(region)}{digits[1:]}"
    else:
        prefix = "+" + digits
    if prefix == "+":
        raise InvalidInput(f"search {query!r}: type a phone number or its first digits")
    return NumberRange(prefix, _after_prefix(prefix))


def lines(text: str) -> list[str]:
    """Non-empty stripped lines of a text area."""
    return [line.strip() for line in text.splitlines() if line.strip()]


@dataclass(frozen=True)
class NumberSearch:
    """The query of a number list page: whose list, the number searched, the page bounds."""

    account: str = ""
    q: str = ""
    after: str = ""
    before: str = ""


# The query of a number list page, as a FastAPI dependency.
NumberQuery = Annotated[NumberSearch, Depends()]


@dataclass
class NumberPage:
    """One page of a number-ordered list, with the bounds for the links around it."""

    rows: list[Any]
    next_after: str | None
    prev_before: str | None


def number_page(
    session: Session,
    model: Any,
    account_id: int,
    found: NumberRange | None,
    *,
    after: str = "",
    before: str = "",
    size: int,
) -> NumberPage:
    """Keyset page of MODEL rows (account_id, number) in number order, on their unique index."""
    number = model.number
    query = select(model).where(model.account_id == account_id)
    if found is not None:
        query = query.where(*found.where(number))
    if before:
        rows = list(
            session.exec(query.where(number < before).order_by(number.desc()).limit(size + 1))
        )
        more = len(rows) > size
        rows = rows[:size][::-1]
        return NumberPage(
            rows, rows[-1].number if rows else None, rows[0].number if more and rows else None
        )
    if after:
        query = query.where(number > after)
    rows = list(session.exec(query.order_by(number).limit(size + 1)))
    more = len(rows) > size
    rows = rows[:size]
    return NumberPage(
        rows,
        rows[-1].number if more and rows else None,
        rows[0].number if after and rows else None,
    )


def account_region(config: Config, account: Account) -> str:
    """The region national numbers typed for ACCOUNT are read in."""
    return account.default_region or config.hub.default_region


def number_list(
    model: Any,
    path: str,
    config: Config,
    user: ConsoleUser,
    session: Session,
    account: Account,
    search: NumberSearch | None = None,
) -> dict[str, Any]:
    """The context of a page listing ACCOUNT's MODEL numbers (blacklist, invalid numbers):
    the layout, a keyset page of the numbers SEARCH asks for, its links, an empty add form."""
    assert account.id is not None
    q, after, before = (search.q, search.after, search.before) if search else ("", "", "")
    rows = number_page(
        session,
        model,
        account.id,
        number_range(q, account_region(config, account)),
        after=after,
        before=before,
        size=config.console.page_size,
    )
    own = None if account.id == user.account_id else account.name
    return {
        **layout(session, user, account, path),
        "entries": rows.rows,
        "q": q,
        "next_url": rows.next_after and page_url(path, account=own, q=q, after=rows.next_after),
        "prev_url": rows.prev_before and page_url(path, account=own, q=q, before=rows.prev_before),
        "report": None,
        "pasted": "",
        # The blacklist page says that the parent account's blacklist applies too.
        "has_parent": account.parent_id is not None,
    }


def lines_to_import(text: str, most: int, elsewhere: str) -> list[str]:
    """The lines of a pasted list, at most MOST of them (ELSEWHERE: where a longer list
    goes, said in the error)."""
    pasted = text.splitlines()
    if len(pasted) > most:
        raise InvalidInput(f"paste at most {most} lines at a time {elsewhere}")
    return pasted
