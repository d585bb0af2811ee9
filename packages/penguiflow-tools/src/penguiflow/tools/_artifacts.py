"""Large and binary results stored apart: ``ArtifactStore``, ``ArtifactRef``, extraction.

A tool's image/audio/blob content, base64 strings of known binary formats and long strings are
put in an ``ArtifactStore`` under the caller's ``ArtifactScope`` and replaced in the result by
an ``ArtifactRef`` (a name, a size, a hash and a short preview), so they never become prompt
text. ``get`` returns the bytes only to a caller whose scope matches.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import uuid
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, ClassVar, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

from penguiflow.core import DurableStore, Scope

from ._errors import ToolClientError

__all__ = [
    "ArtifactExtractionConfig",
    "ArtifactRef",
    "ArtifactScope",
    "ArtifactStore",
    "DurableArtifactStore",
    "InMemoryArtifactStore",
    "extract_artifacts",
    "scope_of",
]

ARTIFACTS_NAMESPACE = "tools.artifacts"
"""Durable namespace of artifacts (key = artifact id)."""
TEXT_MIME = "text/plain; charset=utf-8"

_MAGIC: tuple[tuple[bytes, str, str], ...] = (
    (b"%PDF", "application/pdf", "pdf"),
    (b"\x89PNG\r\n\x1a\n", "image/png", "png"),
    (b"\xff\xd8\xff", "image/jpeg", "jpg"),
    (b"GIF87a", "image/gif", "gif"),
    (b"GIF89a", "image/gif", "gif"),
    (b"PK\x03\x04", "application/zip", "zip"),
)
_BASE64 = re.compile(r"[A-Za-z0-9+/]+={0,2}")


class ArtifactExtractionConfig(BaseModel):
    """Which parts of a result are stored as artifacts instead of returned inline."""

    model_config: ClassVar[ConfigDict] = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    max_inline_size: int = Field(default=10_000, ge=1)
    """Strings longer than this (characters) become text artifacts."""
    detect_binary: bool = True
    """Store base64 strings whose bytes start with PDF/PNG/JPEG/GIF/ZIP magic."""
    min_binary_size: int = Field(default=1_000, ge=1)
    """Shortest base64 string (characters) checked for magic."""
    preview_chars: int = Field(default=200, ge=0)
    """Characters of text at the start of a text artifact's ``summary``."""
    max_artifact_bytes: int = Field(default=50 * 1024 * 1024, ge=1)
    """Larger parts are refused (``ToolClientError``)."""


class ArtifactRef(BaseModel):
    """What a result holds in place of a stored part."""

    model_config: ClassVar[ConfigDict] = ConfigDict(frozen=True, defer_build=True)

    kind: Literal["artifact"] = "artifact"
    """Always ``"artifact"`` (tells a reference from a value)."""
    id: str
    """The id to ``ArtifactStore.get`` it by."""
    mime_type: str
    """Its media type (long text: ``text/plain; charset=utf-8``)."""
    size_bytes: int
    """Its size in bytes."""
    sha256: str
    """The SHA-256 of its bytes (hex)."""
    filename: str | None = None
    """A file name, when the source gave one (or one derived from the type)."""
    source: str = ""
    """The spec name of the tool that produced it."""
    summary: str = ""
    """What it is; a text artifact's begins with ``preview_chars`` of its text."""


@dataclass(frozen=True, slots=True)
class ArtifactScope:
    """Who may read an artifact: the fields of the producing call's context."""

    tenant: str | None = None
    """``tool_context["tenant"]``."""
    user_id: str | None = None
    """``tool_context["user_id"]``."""
    session_id: str | None = None
    """``tool_context["session_id"]``."""
    trace_id: str | None = None
    """``tool_context["trace_id"]``."""

    def admits(self, caller: ArtifactScope) -> bool:
        """Whether ``caller`` may read what was stored under this scope.

        Every non-None field stored must equal the caller's.
        """
        return all(
            mine is None or mine == theirs
            for mine, theirs in (
                (self.tenant, caller.tenant),
                (self.user_id, caller.user_id),
                (self.session_id, caller.session_id),
                (self.trace_id, caller.trace_id),
            )
        )


def scope_of(ctx: Any) -> ArtifactScope:
    """The ``ArtifactScope`` of a call's ``ctx`` (its ``tool_context``)."""
    context: Any = getattr(ctx, "tool_context", None)
    if not isinstance(context, Mapping):
        return ArtifactScope()
    values: Mapping[str, Any] = context  # pyright: ignore[reportUnknownVariableType]

    def text(key: str) -> str | None:
        value = values.get(key)
        return str(value) if value is not None and value != "" else None

    return ArtifactScope(
        tenant=text("tenant"),
        user_id=text("user_id"),
        session_id=text("session_id"),
        trace_id=text("trace_id"),
    )


@runtime_checkable
class ArtifactStore(Protocol):
    """Where extracted parts are kept."""

    async def put(
        self,
        data: bytes,
        *,
        mime_type: str,
        filename: str | None = None,
        scope: ArtifactScope,
        source: str,
        summary: str = "",
    ) -> ArtifactRef:
        """Store ``data``; returns its reference."""
        ...

    async def get(self, artifact_id: str, *, scope: ArtifactScope) -> bytes | None:
        """The bytes, or None when unknown, evicted, expired or not admitted by ``scope``."""
        ...


def _ref(
    data: bytes, *, mime_type: str, filename: str | None, source: str, summary: str
) -> ArtifactRef:
    return ArtifactRef(
        id=uuid.uuid4().hex,
        mime_type=mime_type,
        size_bytes=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        filename=filename,
        source=source,
        summary=summary or f"{mime_type}, {len(data)} bytes",
    )


class InMemoryArtifactStore:
    """Artifacts in this process, least recently used evicted past ``max_total_bytes``."""

    def __init__(self, *, max_total_bytes: int = 256 * 1024 * 1024) -> None:
        if max_total_bytes < 1:
            raise ValueError("max_total_bytes must be >= 1")
        self._max = max_total_bytes
        self._total = 0
        self._items: OrderedDict[str, tuple[bytes, ArtifactScope, ArtifactRef]] = OrderedDict()

    @property
    def total_bytes(self) -> int:
        """Bytes held now."""
        return self._total

    async def put(
        self,
        data: bytes,
        *,
        mime_type: str,
        filename: str | None = None,
        scope: ArtifactScope,
        source: str,
        summary: str = "",
    ) -> ArtifactRef:
        """Store ``data`` (evicting the least recently used past the limit)."""
        ref = _ref(data, mime_type=mime_type, filename=filename, source=source, summary=summary)
        self._items[ref.id] = (bytes(data), scope, ref)
        self._total += len(data)
        while self._total > self._max and len(self._items) > 1:
            _, (old, _, _) = self._items.popitem(last=False)
            self._total -= len(old)
        return ref

    async def get(self, artifact_id: str, *, scope: ArtifactScope) -> bytes | None:
        """The bytes, or None when unknown, evicted or not admitted by ``scope``."""
        item = self._items.get(artifact_id)
        if item is None or not item[1].admits(scope):
            return None
        self._items.move_to_end(artifact_id)
        return item[0]


class DurableArtifactStore:
    """Artifacts in a core ``DurableStore`` (namespace ``tools.artifacts``, TTL ``ttl_s``).

    Records carry ``Scope(tenant or "default", user=user_id, session=session_id)``, so
    ``store.erase(tenant, user=…)`` removes a user's artifacts.
    """

    def __init__(self, store: DurableStore, *, ttl_s: float | None = 3600) -> None:
        self._store = store
        self._ttl_s = ttl_s

    async def put(
        self,
        data: bytes,
        *,
        mime_type: str,
        filename: str | None = None,
        scope: ArtifactScope,
        source: str,
        summary: str = "",
    ) -> ArtifactRef:
        """Store ``data`` as one record: a JSON header line, then the bytes."""
        ref = _ref(data, mime_type=mime_type, filename=filename, source=source, summary=summary)
        header = json.dumps({"scope": asdict(scope), "ref": ref.model_dump(mode="json")})
        await self._store.put(
            ARTIFACTS_NAMESPACE,
            ref.id,
            header.encode() + b"\n" + bytes(data),
            scope=Scope(scope.tenant or "default", user=scope.user_id, session=scope.session_id),
            ttl_s=self._ttl_s,
        )
        return ref

    async def get(self, artifact_id: str, *, scope: ArtifactScope) -> bytes | None:
        """The bytes, or None when unknown, expired or not admitted by ``scope``."""
        record = await self._store.get(ARTIFACTS_NAMESPACE, artifact_id)
        if record is None:
            return None
        header, _, data = record.value.partition(b"\n")
        stored = ArtifactScope(**json.loads(header)["scope"])
        return data if stored.admits(scope) else None


def _magic(data: bytes) -> tuple[str, str] | None:
    for prefix, mime, extension in _MAGIC:
        if data.startswith(prefix):
            return mime, extension
    return None


def _decode_base64(text: str) -> bytes | None:
    compact = text.strip()
    if len(compact) % 4 or not _BASE64.fullmatch(compact):
        return None
    try:
        return base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError):
        return None


class _Extractor:
    def __init__(
        self,
        config: ArtifactExtractionConfig,
        store: ArtifactStore,
        scope: ArtifactScope,
        source: str,
        tool: str,
    ) -> None:
        self.config = config
        self.store = store
        self.scope = scope
        self.source = source
        self.tool = tool
        self.refs: list[ArtifactRef] = []

    async def put(
        self, data: bytes, mime_type: str, filename: str | None, summary: str = ""
    ) -> ArtifactRef:
        if len(data) > self.config.max_artifact_bytes:
            raise ToolClientError(
                f"{self.tool} returned a part of {len(data)} bytes, over "
                f"max_artifact_bytes={self.config.max_artifact_bytes}",
                source=self.source,
                tool=self.tool,
                detail={"size_bytes": len(data), "mime_type": mime_type},
            )
        try:
            ref = await self.store.put(
                data,
                mime_type=mime_type,
                filename=filename,
                scope=self.scope,
                source=self.tool,
                summary=summary,
            )
        except (ValueError, TypeError) as exc:  # e.g. over a DurableStore's max_value_bytes
            raise ToolClientError(
                f"the artifact store refused a part of {self.tool} ({len(data)} bytes, "
                f"{mime_type}): {exc}",
                source=self.source,
                tool=self.tool,
                detail={"size_bytes": len(data), "mime_type": mime_type},
            ) from exc
        self.refs.append(ref)
        return ref

    async def block(self, value: Mapping[str, Any]) -> ArtifactRef | None:
        """An MCP image/audio block, an embedded blob resource or blob contents, stored."""
        kind = value.get("type")
        if kind in ("image", "audio") and isinstance(value.get("data"), str):
            data = _decode_base64(str(value["data"]))
            if data is not None:
                mime = str(value.get("mimeType") or "application/octet-stream")
                return await self.put(data, mime, None, f"{kind} {mime}, {len(data)} bytes")
        resource: Any = value.get("resource") if kind == "resource" else value
        if isinstance(resource, Mapping) and isinstance(resource.get("blob"), str):  # pyright: ignore[reportUnknownMemberType]
            blob: Mapping[str, Any] = resource  # pyright: ignore[reportUnknownVariableType]
            data = _decode_base64(str(blob["blob"]))
            if data is not None:
                mime = str(blob.get("mimeType") or "application/octet-stream")
                uri = str(blob.get("uri") or "")
                filename = uri.rstrip("/").rsplit("/", 1)[-1] or None
                return await self.put(
                    data, mime, filename, f"resource {uri} ({mime}, {len(data)} bytes)"
                )
        return None

    async def text(self, value: str) -> ArtifactRef | None:
        config = self.config
        if config.detect_binary and len(value) >= config.min_binary_size:
            data = _decode_base64(value)
            found = _magic(data) if data is not None else None
            if data is not None and found is not None:
                mime, extension = found
                return await self.put(
                    data, mime, f"{uuid.uuid4().hex[:8]}.{extension}", f"{mime}, {len(data)} bytes"
                )
        if len(value) > config.max_inline_size:
            data = value.encode()
            preview = value[: config.preview_chars]
            more = "…" if len(value) > config.preview_chars else ""
            return await self.put(
                data, TEXT_MIME, None, f"{preview}{more} ({len(value)} characters)"
            )
        return None

    async def walk(self, value: Any) -> Any:
        if isinstance(value, str):
            ref = await self.text(value)
            return value if ref is None else ref
        if isinstance(value, Mapping):
            mapping: Mapping[str, Any] = value  # pyright: ignore[reportUnknownVariableType]
            ref = await self.block(mapping)
            if ref is not None:
                return ref
            return {k: await self.walk(v) for k, v in mapping.items()}
        if isinstance(value, list):
            items: list[Any] = value  # pyright: ignore[reportUnknownVariableType]
            return [await self.walk(v) for v in items]
        return value


async def extract_artifacts(
    value: Any,
    *,
    config: ArtifactExtractionConfig,
    store: ArtifactStore,
    scope: ArtifactScope,
    source: str,
    tool: str,
) -> tuple[Any, list[ArtifactRef]]:
    """``value`` with large/binary parts stored and replaced by ``ArtifactRef``s, and the refs.

    Raises:
        ToolClientError: A part is larger than ``max_artifact_bytes``.
    """
    extractor = _Extractor(config, store, scope, source, tool)
    return await extractor.walk(value), extractor.refs
