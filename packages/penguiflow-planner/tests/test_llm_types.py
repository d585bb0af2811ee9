"""Usage, ModelPrice, LLMResult and the client protocol."""

import dataclasses
from collections.abc import Sequence

import pytest

from penguiflow.planner import JSONLLMClient, LLMMessage, LLMResult, ModelPrice, Usage


def test_usage_totals_and_adds_up() -> None:
    first = Usage(prompt_tokens=10, completion_tokens=4, cached_tokens=2)
    second = Usage(prompt_tokens=5, completion_tokens=1)
    assert first.total_tokens == 14
    assert first + second == Usage(prompt_tokens=15, completion_tokens=5, cached_tokens=2)
    assert Usage() == Usage(0, 0, 0)


def test_usage_is_frozen_and_rejects_negative_or_non_int_counts() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        Usage().prompt_tokens = 3  # type: ignore[misc]
    with pytest.raises(ValueError, match="prompt_tokens"):
        Usage(prompt_tokens=-1)
    with pytest.raises(ValueError, match="completion_tokens"):
        Usage(completion_tokens=1.5)  # type: ignore[arg-type]


def test_model_price_charges_cached_input_at_its_own_price() -> None:
    price = ModelPrice(input_per_mtok=2.0, output_per_mtok=8.0, cached_input_per_mtok=0.5)
    usage = Usage(prompt_tokens=1_000_000, completion_tokens=500_000, cached_tokens=400_000)
    # 600k uncached at 2.0 + 400k cached at 0.5 + 500k output at 8.0
    assert price.cost(usage) == pytest.approx(1.2 + 0.2 + 4.0)


def test_model_price_without_a_cached_price_charges_the_input_price() -> None:
    price = ModelPrice(input_per_mtok=1.0, output_per_mtok=2.0)
    usage = Usage(prompt_tokens=1000, completion_tokens=1000, cached_tokens=500)
    assert price.cost(usage) == pytest.approx(0.003)


def test_model_price_rejects_negative_prices() -> None:
    with pytest.raises(ValueError, match="output_per_mtok"):
        ModelPrice(input_per_mtok=1.0, output_per_mtok=-1.0)


def test_llm_result_is_frozen_with_optional_fields() -> None:
    result = LLMResult("{}")
    assert (result.usage, result.cost_usd, result.model, result.finish_reason, result.raw) == (
        None,
        None,
        None,
        None,
        None,
    )
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.text = "other"  # type: ignore[misc]


def test_coerce_accepts_a_result_a_text_or_a_text_and_cost() -> None:
    result = LLMResult("a", usage=Usage(1, 1))
    assert LLMResult.coerce(result) is result
    assert LLMResult.coerce("plain") == LLMResult("plain")
    assert LLMResult.coerce(("priced", 0.25)) == LLMResult("priced", cost_usd=0.25)
    assert LLMResult.coerce(("int cost", 1)).cost_usd == 1.0


@pytest.mark.parametrize("value", [None, 42, ("text",), ("text", "0.1"), (1, 0.1), ("t", True)])
def test_coerce_rejects_anything_else_naming_it(value: object) -> None:
    with pytest.raises(TypeError, match="complete\\(\\) must return"):
        LLMResult.coerce(value)


def test_a_reference_client_returning_a_str_satisfies_the_protocol() -> None:
    class Reference:
        async def complete(
            self,
            *,
            messages: Sequence[LLMMessage],
            response_format: object = None,
            stream: bool = False,
            on_stream_chunk: object = None,
        ) -> str:
            return "{}"

    assert isinstance(Reference(), JSONLLMClient)
    assert not isinstance(object(), JSONLLMClient)
