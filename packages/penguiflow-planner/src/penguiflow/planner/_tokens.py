"""Token counters: estimates for budgets and compaction when a provider reports no usage."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from ._llm import LLMMessage

if TYPE_CHECKING:
    import tiktoken

__all__ = ["CharCounter", "TiktokenCounter", "TokenCounter"]

_TIKTOKEN_HINT = 'TiktokenCounter needs tiktoken: pip install "penguiflow-planner[tiktoken]"'


@runtime_checkable
class TokenCounter(Protocol):
    """Counts tokens of text and of whole conversations."""

    def count(self, text: str) -> int:
        """Tokens in ``text``."""
        ...

    def count_messages(self, messages: Sequence[LLMMessage]) -> int:
        """Tokens a conversation takes in a prompt, per-message overhead included."""
        ...


class CharCounter:
    """A cheap estimate from the length of the text: ``len(text) // chars_per_token + 1``.

    Each message adds 4 tokens of overhead (role and separators). Good enough for budgets; use
    :class:`TiktokenCounter` when you need OpenAI's exact counts.
    """

    __slots__ = ("_chars_per_token",)

    def __init__(self, chars_per_token: int = 4) -> None:
        """Make a counter.

        Args:
            chars_per_token: Characters taken as one token (at least 1).

        Raises:
            ValueError: ``chars_per_token`` is below 1.
        """
        if isinstance(chars_per_token, bool) or chars_per_token < 1:
            raise ValueError(f"chars_per_token must be an int >= 1, got {chars_per_token!r}")
        self._chars_per_token = chars_per_token

    @property
    def chars_per_token(self) -> int:
        """Characters taken as one token."""
        return self._chars_per_token

    def count(self, text: str) -> int:
        """Estimated tokens in ``text``: ``len(text) // chars_per_token + 1``."""
        return len(text) // self._chars_per_token + 1

    def count_messages(self, messages: Sequence[LLMMessage]) -> int:
        """Estimated tokens of a conversation: each message's content plus 4."""
        return sum(self.count(message["content"]) + 4 for message in messages)

    def __repr__(self) -> str:
        return f"CharCounter(chars_per_token={self._chars_per_token})"


class TiktokenCounter:
    """Exact counts with OpenAI's tokenizer (``pip install "penguiflow-planner[tiktoken]"``).

    A conversation counts as OpenAI's chat format does: 3 tokens per message plus its role and
    content, plus 3 that prime the reply.
    """

    __slots__ = ("_encoding", "_name")

    def __init__(self, encoding: str | tiktoken.Encoding = "o200k_base") -> None:
        """Make a counter.

        Args:
            encoding: An encoding name (tiktoken downloads its BPE file on first use unless
                ``TIKTOKEN_CACHE_DIR`` holds it), or a ready ``tiktoken.Encoding`` (offline).

        Raises:
            ImportError: tiktoken is not installed; the message has the install command.
        """
        try:
            import tiktoken
        except ImportError as exc:
            raise ImportError(_TIKTOKEN_HINT) from exc
        if isinstance(encoding, str):
            self._name = encoding
            self._encoding: tiktoken.Encoding | None = None
        elif isinstance(encoding, tiktoken.Encoding):  # pyright: ignore[reportUnnecessaryIsInstance]
            self._name = encoding.name
            self._encoding = encoding
        else:
            raise TypeError(
                f"encoding must be an encoding name or a tiktoken.Encoding, got {encoding!r}"
            )

    @property
    def encoding_name(self) -> str:
        """The encoding's name."""
        return self._name

    def _loaded(self) -> tiktoken.Encoding:
        if self._encoding is None:
            import tiktoken

            self._encoding = tiktoken.get_encoding(self._name)
        return self._encoding

    def count(self, text: str) -> int:
        """Tokens in ``text`` (special-token text counts as ordinary text)."""
        return len(self._loaded().encode(text, disallowed_special=()))

    def count_messages(self, messages: Sequence[LLMMessage]) -> int:
        """Tokens of a conversation in OpenAI's chat format."""
        return sum(3 + self.count(m["role"]) + self.count(m["content"]) for m in messages) + 3

    def __repr__(self) -> str:
        return f"TiktokenCounter(encoding={self._name!r})"
