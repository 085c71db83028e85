"""Whom a reminder greets: the appointment's title without its number, and a person's name
only when one is found, with where it came from.

A title is what the receptionist typed for herself ("Kiné M. Blanc 06 12 34 56 78",
"Journée Mme Vert"): it is no name to greet a patient with. A name is taken, in this order,
from a ``Nom:`` / ``Patient:`` line of the description (written for this), an attendee's
name (an ICS/CalDAV ATTENDEE's CN, the attendee list of Google, Microsoft 365, Exchange), or
a contact of the calendar's account with the reminder's number; otherwise it is empty and
the templates greet without one.

Contacts are read for a whole chunk of numbers in one statement (``contact_names``), never
one query per appointment; the rest is a few regular expressions per event.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection
from dataclasses import dataclass
from functools import lru_cache

from sqlalchemy import Connection, bindparam, select

from hub.ports.calendar import CalendarEvent
from hub.store.db import member, table
from hub.store.models import Contact, ContactList

# Where a name came from (stored in calendar_events.person_source).
DESCRIPTION = "description"
ATTENDEE = "attendee"
CONTACT = "contact"

_NAME_LINE = re.compile(r"^\s*(?:name|nom|patient|client|customer)\s*[:.]\s*(.+)$", re.I | re.M)
# A phone number as people write one in a title: "06 12 34 56 78", "+41 79 123 45 67".
_NUMBER = re.compile(r"[+(]?\d[\d .()\-/]{5,}\d")
_EMAIL = re.compile(r"\S+@\S+")
# Longest name kept (the column's size).
MAX_NAME = 255

# Merge fields of a contact that hold a whole name, then first and last names.
_FULL = ("name", "full_name", "nom_complet", "fullname", "display_name")
_FIRST = ("first_name", "prenom", "firstname", "given_name")
_LAST = ("last_name", "nom", "lastname", "surname", "family_name")

CONTACTS = table(Contact)
LISTS = table(ContactList)
_NUMBERS_PER_QUERY = 1000
_CONTACTS_BY_NUMBER = (
    select(CONTACTS.c.number, CONTACTS.c.fields)
    .select_from(CONTACTS.join(LISTS, LISTS.c.id == CONTACTS.c.list_id))
    .where(
        LISTS.c.account_id == bindparam("account_id"),
        member(CONTACTS.c.number, "numbers"),
    )
    # The oldest list's entry wins when a number is on several: the same name every sync.
    .order_by(CONTACTS.c.id)
)


@dataclass(frozen=True)
class Naming:
    """What a template greets with."""

    title: str  # the event's title without its phone number
    name: str  # a person's name, or ""
    source: str  # DESCRIPTION | ATTENDEE | CONTACT, or "" when no name was found


# Planning cleans each appointment's title twice (its naming, then its text): the second
# time is a lookup. Bounded; the titles of one chunk's events come one after the other.
@lru_cache(maxsize=1024)
def clean_title(title: str) -> str:
    """TITLE without phone numbers: "Kiné M. Blanc 06 12 34 56 78" → "Kiné M. Blanc"."""
    text = _NUMBER.sub(" ", title)
    return " ".join(text.split()).strip(" -–:,;")


def _tidy(name: str) -> str:
    # A name line may carry the number too ("Nom: Jeanne Durand 06 12 ...").
    return clean_title(name)[:MAX_NAME]


def name_in_event(event: CalendarEvent) -> tuple[str, str]:
    """(name, source) found in the event itself, else ("", "")."""
    m = _NAME_LINE.search(event.description)
    if m:
        name = _tidy(m.group(1))
        if name:
            return name, DESCRIPTION
    for attendee in event.attendees:
        name = _tidy(attendee.name or "")
        # A CN that is only the address says nothing of the person.
        if name and not _EMAIL.fullmatch(name):
            return name, ATTENDEE
    return "", ""


def contact_name(fields: str) -> str:
    """The name in a contact's merge fields (JSON), "" when it has none."""
    try:
        values = json.loads(fields or "{}")
    except ValueError:
        return ""
    if not isinstance(values, dict):
        return ""

    def first_of(keys: tuple[str, ...]) -> str:
        for key in keys:
            value = values.get(key)
            if isinstance(value, str | int) and str(value).strip():
                return " ".join(str(value).split())
        return ""

    full = first_of(_FULL)
    if full:
        return full[:MAX_NAME]
    return " ".join(p for p in (first_of(_FIRST), first_of(_LAST)) if p)[:MAX_NAME]


def contact_names(conn: Connection, account_id: int, numbers: Collection[str]) -> dict[str, str]:
    """Number → name of ACCOUNT_ID's contacts among NUMBERS (those with a name), in one
    statement per thousand numbers."""
    wanted = sorted(set(numbers))
    found: dict[str, str] = {}
    for start in range(0, len(wanted), _NUMBERS_PER_QUERY):
        params = {"account_id": account_id, "numbers": wanted[start : start + _NUMBERS_PER_QUERY]}
        for number, fields in conn.execute(_CONTACTS_BY_NUMBER, params):
            if number not in found:
                name = contact_name(fields)
                if name:
                    found[number] = name
    return found


def naming(
    event: CalendarEvent,
    phone: str | None,
    contacts: dict[str, str] | None = None,
    in_event: tuple[str, str] | None = None,
) -> Naming:
    """EVENT's title and the name to greet, CONTACTS (number → name) asked last; IN_EVENT:
    what ``name_in_event(event)`` gave, when the caller has it already."""
    name, source = greeting(event, phone, contacts, in_event)
    return Naming(clean_title(event.title), name, source)


def greeting(
    event: CalendarEvent,
    phone: str | None,
    contacts: dict[str, str] | None = None,
    in_event: tuple[str, str] | None = None,
) -> tuple[str, str]:
    """(name, source) of ``naming``, without the title (the planner greets with this and
    renders the title itself: no Naming object per appointment)."""
    name, source = name_in_event(event) if in_event is None else in_event
    if not name and phone and contacts and contacts.get(phone):
        name, source = contacts[phone], CONTACT
    return name, source
