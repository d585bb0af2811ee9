"""What a ``Cassette`` holds, and the report of a call it has no recording of.

The distinct calls of each kind are keyed by the SHA-256 of their canonical JSON; the nearest
recorded call is the one whose canonical JSON is most alike (``difflib`` ratio).
"""

from __future__ import annotations

import difflib
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, cast

from ._errors import ReplayMismatch

Kind = Literal["llm", "tool"]


@dataclass(slots=True)
class Entry:
    """One distinct call and every answer recorded for it, in order."""

    request: dict[str, Any]
    canonical: str
    answers: list[dict[str, Any]] = field(default_factory=lambda: [])


class Recordings:
    """What a cassette holds: the distinct calls of each kind, by key."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.entries: dict[Kind, dict[str, Entry]] = {"llm": {}, "tool": {}}

    def add(self, kind: Kind, request: dict[str, Any], answer: dict[str, Any]) -> None:
        text = canonical(request)
        key = key_of(text)
        entries = self.entries[kind]
        entry = entries.get(key)
        if entry is None:
            entry = entries[key] = Entry(request, text)
        entry.answers.append(answer)

    def count(self, kind: Kind) -> int:
        return sum(len(entry.answers) for entry in self.entries[kind].values())


def canonical(value: Any) -> str:
    """``value`` as canonical JSON: sorted keys, no spaces, text as is."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def key_of(text: str) -> str:
    """The key of a call: the SHA-256 of its canonical JSON."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# ---------------------------------------------------------------- mismatch reports
_DIFF_LINES = 40
_LINE_CHARS = 200


def mismatch(
    path: Path, kind: Kind, request: dict[str, Any], text: str, entries: dict[str, Entry]
) -> ReplayMismatch:
    """The failure for ``request`` (canonical JSON ``text``), which ``entries`` lack."""
    what = "LLM call" if kind == "llm" else f"call of tool {request['tool']!r}"
    head = f"cassette {str(path)!r} has no recording of this {what}"
    nearest = _nearest(text, list(entries.values()))
    if nearest is None:
        body = f"; it holds no {'LLM' if kind == 'llm' else 'tool'} calls at all.\n" + "\n".join(
            _clip(line) for line in _lines(request)[:_DIFF_LINES]
        )
        return ReplayMismatch(head + body, kind=kind, request=request, nearest=None)
    entry, ratio = nearest
    diff = list(
        difflib.unified_diff(
            _lines(entry.request), _lines(request), "recorded", "this call", n=1, lineterm=""
        )
    )
    shown = [_clip(line) for line in diff[:_DIFF_LINES]]
    if len(diff) > _DIFF_LINES:
        shown.append(f"... ({len(diff) - _DIFF_LINES} more diff lines)")
    message = (
        f"{head} ({len(entries)} distinct recorded). The nearest recorded one "
        f"({int(ratio * 100)}% alike), {_describe(entry.request)}, differs "
        "(- recorded, + this call):\n" + "\n".join(shown)
    )
    return ReplayMismatch(message, kind=kind, request=request, nearest=entry.request)


def _nearest(text: str, entries: list[Entry]) -> tuple[Entry, float] | None:
    if not entries:
        return None
    # quick_ratio is an upper bound of ratio: rank by it, then compute ratio for the best few.
    shortlist = sorted(
        entries,
        key=lambda e: (
            -difflib.SequenceMatcher(None, e.canonical, text).quick_ratio(),
            e.canonical,
        ),
    )[:5]
    scored = [(difflib.SequenceMatcher(None, e.canonical, text).ratio(), e) for e in shortlist]
    ratio, entry = max(scored, key=lambda pair: (pair[0], pair[1].canonical))
    return entry, ratio


def _describe(request: dict[str, Any]) -> str:
    if "tool" in request:
        return f"tool {request['tool']!r} with args {_clip(canonical(request['args']), 80)}"
    messages = cast(list[dict[str, Any]], request.get("messages") or [])
    last = messages[-1] if messages else {"role": "-", "content": ""}
    return (
        f"{len(messages)} messages ending [{last.get('role')}] "
        f"{_clip(str(last.get('content')), 80)!r}"
    )


def _lines(request: dict[str, Any]) -> list[str]:
    if "tool" in request:
        return [
            f"tool: {request['tool']}",
            *json.dumps(request["args"], indent=2, sort_keys=True).splitlines(),
        ]
    lines: list[str] = []
    for message in cast(list[dict[str, Any]], request.get("messages") or []):
        lines.append(f"[{message.get('role')}]")
        lines.extend(f"  {line}" for line in str(message.get("content", "")).splitlines())
    lines.append(f"response_format: {canonical(request.get('response_format'))}")
    return lines


def _clip(text: str, limit: int = _LINE_CHARS) -> str:
    return text if len(text) <= limit else text[:limit] + "..."
