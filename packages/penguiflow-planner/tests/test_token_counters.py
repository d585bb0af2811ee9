"""CharCounter and TiktokenCounter (on an offline encoding built here: nothing is downloaded)."""

import subprocess
import sys
import textwrap

import pytest
import tiktoken

from penguiflow.planner import CharCounter, LLMMessage, TiktokenCounter, TokenCounter

MESSAGES: list[LLMMessage] = [
    {"role": "system", "content": "be brief"},
    {"role": "user", "content": "hello there"},
]


def offline_encoding() -> tiktoken.Encoding:
    """Byte-level BPE with one merge ("ab"), split on whitespace: small and fully known."""
    ranks = {bytes([i]): i for i in range(256)}
    ranks[b"ab"] = 256
    return tiktoken.Encoding(
        name="offline-test", pat_str=r"\S+|\s+", mergeable_ranks=ranks, special_tokens={}
    )


def test_char_counter_estimates_a_token_per_four_characters_plus_one() -> None:
    counter = CharCounter()
    assert counter.chars_per_token == 4
    assert [counter.count(t) for t in ("", "abc", "abcd", "a" * 17)] == [1, 1, 2, 5]


def test_char_counter_adds_four_tokens_per_message() -> None:
    counter = CharCounter()
    assert counter.count_messages(MESSAGES) == (8 // 4 + 1 + 4) + (11 // 4 + 1 + 4)
    assert counter.count_messages([]) == 0


def test_char_counter_takes_its_ratio_and_rejects_a_bad_one() -> None:
    assert CharCounter(chars_per_token=2).count("abcdef") == 4
    with pytest.raises(ValueError, match="chars_per_token"):
        CharCounter(chars_per_token=0)


def test_both_counters_satisfy_the_protocol() -> None:
    assert isinstance(CharCounter(), TokenCounter)
    assert isinstance(TiktokenCounter(offline_encoding()), TokenCounter)


def test_tiktoken_counter_counts_with_the_given_encoding() -> None:
    counter = TiktokenCounter(offline_encoding())
    assert counter.encoding_name == "offline-test"
    assert counter.count("ab") == 1  # merged
    assert counter.count("abc") == 2
    assert counter.count("ab ab") == 3  # "ab", " ", "ab"
    assert counter.count("") == 0


def test_tiktoken_counter_counts_special_token_text_as_plain_text() -> None:
    counter = TiktokenCounter(offline_encoding())
    assert counter.count("<|endoftext|>") == len("<|endoftext|>")


def test_tiktoken_counter_counts_conversations_in_openais_chat_format() -> None:
    counter = TiktokenCounter(offline_encoding())
    expected = sum(3 + counter.count(m["role"]) + counter.count(m["content"]) for m in MESSAGES)
    assert counter.count_messages(MESSAGES) == expected + 3


def test_a_named_encoding_is_not_loaded_before_first_use() -> None:
    counter = TiktokenCounter("o200k_base")  # no download: nothing counted yet
    assert counter.encoding_name == "o200k_base"
    assert repr(counter) == "TiktokenCounter(encoding='o200k_base')"


def test_a_bad_encoding_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="encoding"):
        TiktokenCounter(42)  # type: ignore[arg-type]


def test_without_tiktoken_the_error_says_what_to_install() -> None:
    code = textwrap.dedent(
        """
        import sys

        class Block:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] == "tiktoken":
                    raise ImportError("blocked " + name)
                return None

        sys.meta_path.insert(0, Block())
        from penguiflow.planner import TiktokenCounter
        try:
            TiktokenCounter()
        except ImportError as exc:
            print(exc)
        """
    )
    completed = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert 'pip install "penguiflow-planner[tiktoken]"' in completed.stdout
