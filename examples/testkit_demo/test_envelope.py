"""Envelope checks: a node must keep headers, trace_id, deadline_s and meta of its input."""

import pytest

from penguiflow.core import Context, Message
from penguiflow.testkit import EnvelopeNotPreserved, assert_preserves_message_envelope


async def translate(msg: Message, ctx: Context) -> Message:
    return msg.with_payload(f"[fr] {msg.payload}").with_meta(lang="fr")


async def translate_badly(msg: Message, ctx: Context) -> Message:
    # Builds a brand-new message: a new trace id, no deadline, no meta.
    return Message(payload=f"[fr] {msg.payload}", headers=msg.headers)


async def test_translate_keeps_the_envelope() -> None:
    result = await assert_preserves_message_envelope(translate, payload="hello")
    assert result.payload == "[fr] hello"


async def test_building_a_new_message_loses_the_envelope() -> None:
    with pytest.raises(EnvelopeNotPreserved, match="trace_id changed"):
        await assert_preserves_message_envelope(translate_badly)
