"""What the native clients share: cost from their pricing, and closing what they own."""

from __future__ import annotations

from types import TracebackType
from typing import Any, Self

from ._llm import ModelPrice, Usage

__all__ = ["NativeClient"]


class NativeClient:
    """Base of ``OpenAIJSONClient`` and ``AnthropicJSONClient`` (an async context manager)."""

    pricing: ModelPrice | None
    """Prices per million tokens (None: calls report no cost)."""
    _client: Any
    _owns_client: bool

    def _cost(self, usage: Usage | None) -> float | None:
        if self.pricing is None or usage is None:
            return None
        return self.pricing.cost(usage)

    async def aclose(self) -> None:
        """Close the HTTP connections (not those of a ``client=`` given to the constructor)."""
        if self._owns_client:
            await self._client.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
