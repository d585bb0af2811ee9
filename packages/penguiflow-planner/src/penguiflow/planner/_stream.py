"""Streaming a final answer: the deltas of ``args.answer`` as the model writes them."""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING

from ._events import PlannerEventType

if TYPE_CHECKING:
    from ._run import Run

__all__ = ["AnswerStream"]

_FINAL = re.compile(r'"next_node"\s*:\s*"final_response"')
_ANSWER = re.compile(r'"answer"\s*:\s*"')
_ESCAPES = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}


class AnswerStream:
    """Fed the raw text deltas of a planning call; emits the answer's text as it appears.

    Only a ``final_response`` with a string answer streams: each new piece of the decoded
    answer becomes an ``llm_stream_chunk`` event (``extra["text"]``), and goes to the run's
    chunk sink when it has one (the planner as a node streams it as ``StreamChunk``s). The
    pieces concatenate to the answer.
    """

    def __init__(self, run: Run, step: int) -> None:
        self.run = run
        self.step = step
        self.text = ""
        self.final = False
        self.start: int | None = None
        """Where the answer's characters begin in ``text``."""
        self.pos = 0
        """How far into ``text`` the answer was decoded."""
        self.closed = False

    def feed(self, delta: str, done: bool) -> None:
        """The ``on_stream_chunk`` callback of the planning call."""
        if done or self.closed:
            return
        self.text += delta
        if not self.final:
            self.final = _FINAL.search(self.text) is not None
        if self.start is None:
            match = _ANSWER.search(self.text)
            if match is None:
                return
            self.start = self.pos = match.end()
        if not self.final:
            return
        piece = self._decode()
        if piece:
            self.run.event(PlannerEventType.LLM_STREAM_CHUNK, step=self.step, extra={"text": piece})
            self.run.stream_chunk(piece)

    def _decode(self) -> str:
        text, i = self.text, self.pos
        out: list[str] = []
        while i < len(text):
            char = text[i]
            if char == '"':
                self.closed = True
                i += 1
                break
            if char != "\\":
                out.append(char)
                i += 1
                continue
            if i + 1 >= len(text):
                break  # an escape split across deltas: wait for the rest
            code = text[i + 1]
            if code == "u":
                if i + 6 > len(text):
                    break
                try:
                    size = 12 if 0xD800 <= int(text[i + 2 : i + 6], 16) <= 0xDBFF else 6
                    if i + size > len(text):
                        break  # a surrogate pair (emoji ...): wait for its second half
                    out.append(json.loads(f'"{text[i : i + size]}"'))
                except ValueError:  # not JSON after all: stop streaming, the run goes on
                    self.closed = True
                    break
                i += size
                continue
            out.append(_ESCAPES.get(code, code))
            i += 2
        self.pos = i
        return "".join(out)
