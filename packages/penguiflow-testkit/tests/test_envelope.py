"""assert_preserves_message_envelope: headers, trace_id, deadline_s and meta survive a node."""

import anyio
import pytest

from penguiflow.core import Context, Headers, Message, Node
from penguiflow.testkit import (
    EnvelopeNotPreserved,
    FlowTestTimeout,
    assert_preserves_message_envelope,
    probe_message,
)


async def keeps_envelope(msg: Message, ctx: Context) -> Message:
    return msg.with_payload(f"seen {msg.payload}").with_meta(cost=3)


async def returns_bare_payload(msg: Message, ctx: Context) -> str:
    return "bare"


async def new_message(msg: Message, ctx: Context) -> Message:
    return Message(payload=msg.payload, headers=msg.headers)


async def drops_meta(msg: Message, ctx: Context) -> Message:
    return msg.model_copy(update={"meta": {"cost": 1}})


async def changes_one_meta_value(msg: Message, ctx: Context) -> Message:
    return msg.with_meta(testkit_probe="overwritten")


async def emits_bare_then_returns_none(msg: Message, ctx: Context) -> None:
    await ctx.emit("bare")


async def emits_good_copy(msg: Message, ctx: Context) -> None:
    await ctx.emit(msg.with_payload("copy"))


async def raises(msg: Message, ctx: Context) -> Message:
    raise LookupError("no such thing")


async def test_a_node_that_keeps_the_envelope_passes_and_its_result_is_returned() -> None:
    result = await assert_preserves_message_envelope(Node(keeps_envelope))
    assert isinstance(result, Message)
    assert result.payload == "seen probe"
    assert result.meta["cost"] == 3


async def test_returning_a_bare_payload_fails_saying_to_return_a_message() -> None:
    with pytest.raises(EnvelopeNotPreserved) as info:
        await assert_preserves_message_envelope(returns_bare_payload)
    assert "must return a Message but returned a bare str" in str(info.value)
    assert "return message.with_payload(...)" in str(info.value)


async def test_returning_none_without_emitting_fails_as_nothing_was_produced() -> None:
    async def drops(msg: Message, ctx: Context) -> None:
        return None

    with pytest.raises(EnvelopeNotPreserved, match="returned None and emitted nothing"):
        await assert_preserves_message_envelope(drops)


async def test_a_message_with_a_fresh_trace_id_fails_with_old_and_new_values() -> None:
    msg = probe_message("q")
    with pytest.raises(EnvelopeNotPreserved) as info:
        await assert_preserves_message_envelope(Node(new_message), message=msg)
    text = str(info.value)
    assert text.startswith("node 'new_message' does not preserve the message envelope:")
    assert f"returned Message: trace_id changed from {msg.trace_id!r}" in text
    assert f"deadline_s changed from {msg.deadline_s!r} to None" in text
    assert "meta lost key(s) ['testkit_probe', 'nested']" in text
    assert "message.with_payload(new_payload)" in text
    assert info.value.trace_id == msg.trace_id
    assert len(info.value.problems) == 3


async def test_lost_and_changed_meta_keys_are_named() -> None:
    with pytest.raises(EnvelopeNotPreserved, match=r"meta lost key\(s\) \['testkit_probe'"):
        await assert_preserves_message_envelope(drops_meta)
    with pytest.raises(EnvelopeNotPreserved, match=r"meta\['testkit_probe'\] changed from '"):
        await assert_preserves_message_envelope(changes_one_meta_value)


async def test_emitted_messages_are_checked_and_a_bare_emit_fails() -> None:
    msg = probe_message()
    emitted = await assert_preserves_message_envelope(emits_good_copy, message=msg)
    assert (emitted.payload, emitted.trace_id) == ("copy", msg.trace_id)
    with pytest.raises(EnvelopeNotPreserved, match=r"ctx\.emit #1: a bare str was emitted"):
        await assert_preserves_message_envelope(emits_bare_then_returns_none)


async def test_changed_headers_fail() -> None:
    async def retenant(msg: Message, ctx: Context) -> Message:
        return msg.model_copy(update={"headers": Headers(tenant="other")})

    with pytest.raises(EnvelopeNotPreserved, match="headers changed from"):
        await assert_preserves_message_envelope(retenant)


async def test_the_node_function_runs_even_when_the_message_deadline_has_passed() -> None:
    msg = probe_message().model_copy(update={"deadline_s": 1.0})
    result = await assert_preserves_message_envelope(Node(keeps_envelope), message=msg)
    assert result.deadline_s == 1.0


async def test_a_payload_can_be_given_for_the_default_message() -> None:
    async def needs_int(msg: Message, ctx: Context) -> Message:
        return msg.with_payload(msg.payload + 1)

    result = await assert_preserves_message_envelope(needs_int, payload=41)
    assert result.payload == 42
    with pytest.raises(ValueError, match="message or payload, not both"):
        await assert_preserves_message_envelope(needs_int, message=probe_message(), payload=1)


async def test_an_exception_from_the_node_propagates_unchanged() -> None:
    with pytest.raises(LookupError, match="no such thing"):
        await assert_preserves_message_envelope(raises)


async def test_a_node_that_never_returns_times_out_with_its_name() -> None:
    async def stuck(msg: Message, ctx: Context) -> Message:
        await anyio.Event().wait()
        return msg

    with anyio.fail_after(5):
        with pytest.raises(FlowTestTimeout, match="node 'stuck' did not return within 0.05s"):
            await assert_preserves_message_envelope(stuck, timeout_s=0.05)


def test_the_default_probe_message_sets_every_envelope_field() -> None:
    msg = probe_message()
    assert msg.headers.topic is not None and msg.headers.priority != 0
    assert msg.deadline_s is not None and msg.meta
    assert probe_message().trace_id != msg.trace_id


async def test_a_sync_function_is_rejected_with_the_runtime_advice() -> None:
    def not_async(msg: Message, ctx: Context) -> Message:
        return msg

    with pytest.raises(TypeError, match=r"expects an async node: .*async def"):
        await assert_preserves_message_envelope(not_async)  # pyright: ignore[reportArgumentType]


async def test_a_given_ctx_is_passed_to_the_node_function_directly() -> None:
    class StubContext:
        def __init__(self) -> None:
            self.seen: list[object] = []

    async def uses_stub(msg: Message, ctx: StubContext) -> Message:
        ctx.seen.append(msg.payload)
        return msg.with_payload("stubbed")

    stub = StubContext()
    msg = probe_message("in")
    result = await assert_preserves_message_envelope(uses_stub, message=msg, ctx=stub)
    assert (result.payload, stub.seen) == ("stubbed", ["in"])
    with pytest.raises(EnvelopeNotPreserved, match="trace_id changed"):
        await assert_preserves_message_envelope(new_message, ctx=stub)


async def test_a_given_ctx_still_bounds_the_call() -> None:
    async def stuck(msg: Message, ctx: object) -> Message:
        await anyio.sleep_forever()
        return msg

    with anyio.fail_after(5):
        with pytest.raises(FlowTestTimeout, match="node 'stuck' did not return within 0.05s"):
            await assert_preserves_message_envelope(stuck, ctx=object(), timeout_s=0.05)
