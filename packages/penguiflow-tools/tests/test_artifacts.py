"""Large and binary results become scoped artifacts (real MCP tools over stdio and HTTP)."""

import base64
import hashlib
import json
from collections.abc import Callable
from typing import Any

import pytest

from penguiflow.core import InMemoryDurableStore
from penguiflow.tools import (
    ArtifactExtractionConfig,
    ArtifactRef,
    ArtifactScope,
    ArtifactStore,
    DurableArtifactStore,
    ExternalToolConfig,
    InMemoryArtifactStore,
    ToolCallContext,
    ToolClientError,
    ToolNode,
)

Make = Callable[..., ExternalToolConfig]
Gate = Any  # the conftest gate (conftest is not importable under importlib mode)
ALICE = {"user_id": "alice", "tenant": "acme", "session_id": "s1", "trace_id": "t1"}
ALICE_SCOPE = ArtifactScope(tenant="acme", user_id="alice", session_id="s1", trace_id="t1")


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def test_long_text_image_pdf_and_blob_become_artifacts_over_stdio(stdio: Make) -> None:
    async with ToolNode(stdio()) as node:
        assert isinstance(node.artifacts, InMemoryArtifactStore)
        assert isinstance(node.artifacts, ArtifactStore)
        text = await node.call("long_text", {"chars": 20_000})
        image = await node.call("image", {})
        report = await node.call("report", {})
        attachment = await node.call("attachment", {})
        small = await node.call("long_text", {"chars": 100})

        ref = text.result["result"]  # structured content {"result": …}, replaced in place
        assert isinstance(ref, ArtifactRef) and text.artifacts == [ref]
        assert ref.kind == "artifact" and ref.mime_type == "text/plain; charset=utf-8"
        assert ref.size_bytes == 20_000 and ref.source == "t.long_text"
        assert ref.summary.startswith("line 000000\nline 000001")
        assert "(20000 characters)" in ref.summary and len(ref.summary) < 300
        stored = await node.artifacts.get(ref.id, scope=ArtifactScope())
        assert stored is not None and len(stored) == 20_000 and sha(stored) == ref.sha256
        assert stored.decode().startswith("line 000000\n")

        png = image.result
        assert isinstance(png, ArtifactRef) and image.artifacts == [png]
        assert png.mime_type == "image/png"
        data = await node.artifacts.get(png.id, scope=ArtifactScope())
        assert data is not None and data.startswith(b"\x89PNG\r\n\x1a\n")
        assert len(data) == png.size_bytes and sha(data) == png.sha256

        assert report.result["title"] == "Q3" and report.result["pages"] == 1
        pdf = report.result["pdf"]
        assert isinstance(pdf, ArtifactRef) and pdf.mime_type == "application/pdf"
        assert pdf.filename is not None and pdf.filename.endswith(".pdf")
        pdf_bytes = await node.artifacts.get(pdf.id, scope=ArtifactScope())
        assert pdf_bytes is not None and pdf_bytes.startswith(b"%PDF-")

        caption, blob = attachment.result
        assert caption == "the logo"
        assert isinstance(blob, ArtifactRef) and blob.filename == "logo.png"
        assert blob.sha256 == png.sha256  # the same PNG, embedded as a blob resource

        assert small.result == {"result": small.result["result"]}
        assert isinstance(small.result["result"], str) and small.artifacts == []
    # what reaches the planner is JSON: a reference, never the bytes
    dumped = json.dumps(report.model_dump(mode="json"))
    assert '"kind": "artifact"' in dumped and "JVBER" not in dumped  # base64 of %PDF


async def test_a_binary_resource_read_becomes_an_artifact(stdio: Make) -> None:
    async with ToolNode(stdio()) as node:
        read = await node.call("t.resources_read", {"uri": "memo://files/logo.png"})
        (content,) = read.result["contents"]
        assert isinstance(content, ArtifactRef) and read.artifacts == [content]
        assert (content.mime_type, content.filename) == ("image/png", "logo.png")
        data = await node.artifacts.get(content.id, scope=ArtifactScope())
        assert data is not None and data.startswith(b"\x89PNG")


async def test_a_store_refusing_a_part_is_a_tool_client_error(stdio: Make) -> None:
    durable = InMemoryDurableStore(max_value_bytes=4_096)
    async with ToolNode(stdio(), artifacts=DurableArtifactStore(durable)) as node:
        with pytest.raises(ToolClientError, match="artifact store refused"):
            await node.call("image", {})


async def test_artifacts_are_scoped_to_the_calling_context(gate: Gate, http_config: Make) -> None:
    async with ToolNode(http_config()) as node:
        result = await node.call("image", {}, ctx=ToolCallContext(ALICE))
        ref = result.result
        assert isinstance(ref, ArtifactRef)
        store = node.artifacts
        assert await store.get(ref.id, scope=ALICE_SCOPE) is not None
        for other in (
            ArtifactScope(tenant="acme", user_id="bob", session_id="s1", trace_id="t1"),
            ArtifactScope(tenant="beta", user_id="alice", session_id="s1", trace_id="t1"),
            ArtifactScope(tenant="acme", user_id="alice", session_id="s2", trace_id="t1"),
            ArtifactScope(),
        ):
            assert await store.get(ref.id, scope=other) is None, other
        assert await store.get("no-such-id", scope=ALICE_SCOPE) is None
        # stored without a user: every caller of the tenant may read it
        shared = (await node.call("image", {}, ctx=ToolCallContext({"tenant": "acme"}))).result
        assert await store.get(shared.id, scope=ALICE_SCOPE) is not None
        assert await store.get(shared.id, scope=ArtifactScope(tenant="beta")) is None
    assert gate.calls == {"image": 2}


async def test_thresholds_and_the_size_limit(stdio: Make) -> None:
    inline = ArtifactExtractionConfig(max_inline_size=50_000, detect_binary=False)
    async with ToolNode(stdio(artifact_extraction=inline)) as node:
        text = await node.call("long_text", {"chars": 20_000})
        report = await node.call("report", {})
    assert isinstance(text.result["result"], str) and text.artifacts == []
    assert base64.b64decode(report.result["pdf"]).startswith(b"%PDF") and not report.artifacts

    tiny = ArtifactExtractionConfig(max_inline_size=10, preview_chars=4, max_artifact_bytes=5_000)
    async with ToolNode(stdio(artifact_extraction=tiny)) as node:
        short = await node.call("long_text", {"chars": 40})
        assert short.result["result"].summary.startswith("line…")
        with pytest.raises(ToolClientError, match="max_artifact_bytes=5000") as raised:
            await node.call("image", {})
        assert raised.value.attempts == 1 and raised.value.tool == "t.image"
        assert raised.value.detail["mime_type"] == "image/png"


async def test_durable_artifacts_are_scoped_expire_and_erase_by_user(stdio: Make) -> None:
    durable = InMemoryDurableStore()
    store = DurableArtifactStore(durable, ttl_s=600)
    async with ToolNode(stdio(), artifacts=store) as node:
        assert node.artifacts is store
        result = await node.call("long_text", {"chars": 12_000}, ctx=ToolCallContext(ALICE))
    ref = result.result["result"]
    assert isinstance(ref, ArtifactRef)
    record = await durable.get("tools.artifacts", ref.id)
    assert record is not None and record.expires_at is not None
    assert (record.scope.tenant, record.scope.user, record.scope.session) == ("acme", "alice", "s1")
    data = await store.get(ref.id, scope=ALICE_SCOPE)
    assert data is not None and sha(data) == ref.sha256
    assert await store.get(ref.id, scope=ArtifactScope(tenant="acme", user_id="bob")) is None
    await durable.erase("acme", user="alice")
    assert await store.get(ref.id, scope=ALICE_SCOPE) is None


async def test_the_in_memory_store_evicts_least_recently_used() -> None:
    store = InMemoryArtifactStore(max_total_bytes=250)
    scope = ArtifactScope()
    a = await store.put(b"a" * 100, mime_type="x/a", scope=scope, source="s")
    b = await store.put(b"b" * 100, mime_type="x/b", scope=scope, source="s")
    assert await store.get(a.id, scope=scope) == b"a" * 100  # a is now the most recent
    c = await store.put(b"c" * 100, mime_type="x/c", scope=scope, source="s")
    assert await store.get(b.id, scope=scope) is None
    assert await store.get(a.id, scope=scope) is not None
    assert await store.get(c.id, scope=scope) is not None
    assert store.total_bytes == 200
    with pytest.raises(ValueError, match="max_total_bytes"):
        InMemoryArtifactStore(max_total_bytes=0)
