"""The answer corpus (tests/data/replies): run the hub's answer extraction over every case.

``python -m tests.reply_corpus`` prints the exact-match rate per language, client and kind,
and every miss; tests/test_reply_corpus.py holds the rate. A case matches when the text the
hub extracts equals the expected text after whitespace normalisation (every run of
whitespace, line breaks included, counts as one space).
"""

from __future__ import annotations

import json
import re
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from hub.mail.parse.reply import extract_reply_text

CORPUS = Path(__file__).parent / "data" / "replies"
_WHITESPACE = re.compile(r"\s+")


@dataclass(frozen=True)
class Outcome:
    case: dict[str, str]
    got: str

    @property
    def ok(self) -> bool:
        return normalize(self.got) == normalize(self.case["expected"])


def normalize(text: str) -> str:
    return _WHITESPACE.sub(" ", text).strip()


def load_cases() -> list[dict[str, str]]:
    cases: list[dict[str, str]] = json.loads((CORPUS / "cases.json").read_text("utf-8"))
    return cases


def run_case(case: dict[str, str]) -> Outcome:
    data = (CORPUS / case["file"]).read_bytes()
    if case["kind"] == "eml":
        got = extract_reply_text(data)
    elif case["kind"] == "html":
        got = extract_reply_text(_as_html_mail(data))
    else:
        got = extract_reply_text(data.decode("utf-8"))
    return Outcome(case, got)


def _as_html_mail(html: bytes) -> bytes:
    """An HTML answer as its client sends it: a text/html mail (UTF-8)."""
    head = b"From: a@example.com\r\nTo: b@example.com\r\nSubject: Re: SMS\r\n"
    head += b"MIME-Version: 1.0\r\nContent-Type: text/html; charset=utf-8\r\n"
    head += b"Content-Transfer-Encoding: 8bit\r\n\r\n"
    return head + html


def run_all() -> list[Outcome]:
    return [run_case(case) for case in load_cases()]


def rate(outcomes: list[Outcome]) -> float:
    return sum(o.ok for o in outcomes) / len(outcomes)


def report(outcomes: list[Outcome]) -> str:
    lines = [
        f"exact after whitespace normalisation: {sum(o.ok for o in outcomes)}/"
        f"{len(outcomes)} ({rate(outcomes):.1%})"
    ]
    for key in ("lang", "client", "kind", "source"):
        groups: dict[str, list[Outcome]] = defaultdict(list)
        for outcome in outcomes:
            groups[outcome.case[key]].append(outcome)
        parts = [
            f"{name} {sum(o.ok for o in group)}/{len(group)}"
            for name, group in sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0]))
        ]
        lines.append(f"by {key}: " + ", ".join(parts))
    return "\n".join(lines)


def main() -> None:
    outcomes = run_all()
    verbose = "-v" in sys.argv
    for outcome in outcomes:
        if not outcome.ok:
            print(f"MISS {outcome.case['id']} ({outcome.case['lang']}, {outcome.case['client']})")
            if verbose:
                print(f"  expected: {normalize(outcome.case['expected'])[:300]!r}")
                print(f"  got:      {normalize(outcome.got)[:300]!r}")
    print(report(outcomes))


if __name__ == "__main__":
    main()
