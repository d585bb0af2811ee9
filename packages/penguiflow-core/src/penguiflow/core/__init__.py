"""PenguiFlow core: typed, bounded, steerable async pipelines.

Build a graph of async nodes with :func:`create`, run it with ``async with flow.running()``, put
messages in with ``flow.emit`` and take results out with ``flow.fetch``::

    from penguiflow.core import Headers, Message, Node, create

    async def shout(msg: Message, ctx) -> str:
        return msg.payload.upper()

    shout_node = Node(shout)
    flow = create(shout_node.to())
    async with flow.running():
        await flow.emit(Message(payload="hi", headers=Headers(tenant="demo")))
        print(await flow.fetch())   # HI: what the node returned, as it returned it

For one message and its result, ``await flow.call(message)`` does the emit and the trace-scoped
fetch (starting and stopping the flow when it is not running); ``flow.run_sync(message)`` does
the same from a script, without an event loop.

A node can also be run once, in the calling task, under its ``NodePolicy`` (timeouts, retries,
validation, events): ``await flow.call_node(node, payload)``, or ``await ctx.call_node(...)``
inside a node. ``@tool(...)`` and :func:`build_catalog` describe nodes to a planner as
:class:`NodeSpec` entries (JSON schemas and hints for prompting)::

    @tool(desc="Look a word up", side_effects="read")
    async def define(args: Word, ctx) -> Definition: ...

    catalog = build_catalog([define])          # [NodeSpec(name='define', ...)]
    record = catalog[0].to_tool_record()       # JSON-safe dict for the prompt
    result = await flow.call_node(catalog[0].node, Word(text="floe"))
"""

import importlib as _importlib
import typing as _typing
from dataclasses import is_dataclass as _is_dataclass
from types import FunctionType as _FunctionType

from ._context import Context
from ._create import create
from ._dispatch import OverflowPolicy
from ._distribution import (
    BusEnvelope,
    InMemoryStateStore,
    MessageBus,
    RemoteBinding,
    StateStore,
    StoredEvent,
)
from ._durable import DurableStore, LogEntry, Record, Scope
from ._errors import (
    CycleError,
    FlowError,
    FlowErrorCode,
    FlowStopped,
    GraphError,
    PenguiFlowError,
    RegistryError,
    ScopeMismatch,
    StoreClosed,
    StoreError,
    StoreUnavailable,
    TraceCancelled,
    TraceEnded,
    VersionConflict,
)
from ._events import EventHook, FlowEvent, FlowEventType, Middleware, format_flow_event
from ._flow import PenguiFlow
from ._graph import OPEN_SEA, ROOKERY, Endpoint
from ._logging import (
    ExtraFormatter,
    FlowEventLogger,
    JsonFormatter,
    LatencyCallback,
    StructuredFormatter,
    configure_json_logging,
    configure_logging,
    log_flow_events,
)
from ._node import Node, NodePolicy, calls_playbooks
from ._playbook import call_playbook
from ._registry import ModelRegistry
from ._statistics import FlowStatistics
from ._streaming import chunk_to_ws_json, emit_stream_events, format_sse_event, stream_flow
from ._subflow import PlaybookFactory
from ._trace import current_trace_id
from ._types import WM, BudgetExhausted, FinalAnswer, Headers, Message, StreamChunk, merge_meta

# Imported on first use (see __getattr__): none of these is needed to run a flow.
if _typing.TYPE_CHECKING:
    from ._catalog import NodeSpec, build_catalog
    from ._idempotent import idempotent
    from ._journal import Durability, Journal, JournalStep, current_step_id
    from ._patterns import join_k, map_concurrent
    from ._remote import (
        RemoteCallRequest,
        RemoteCallResult,
        RemoteNode,
        RemoteStreamEvent,
        RemoteTransport,
    )
    from ._routing import (
        DictRoutingPolicy,
        RoutingPolicy,
        RoutingRequest,
        evaluate_policy,
        predicate_router,
        union_router,
    )
    from ._store_history import as_state_store
    from ._store_memory import InMemoryDurableStore
    from ._store_postgres import PostgresDurableStore
    from ._store_redis import RedisDurableStore
    from ._store_sqlite import SQLiteDurableStore
    from ._tool import SideEffect, ToolInputExample, ToolLoadingMode, tool
    from ._viz import flow_to_dot, flow_to_mermaid, to_dot, to_mermaid

_LAZY = {
    **dict.fromkeys(("NodeSpec", "build_catalog"), "_catalog"),
    **dict.fromkeys(("SideEffect", "ToolInputExample", "ToolLoadingMode", "tool"), "_tool"),
    "idempotent": "_idempotent",
    **dict.fromkeys(("Durability", "Journal", "JournalStep", "current_step_id"), "_journal"),
    **dict.fromkeys(("join_k", "map_concurrent"), "_patterns"),
    **dict.fromkeys(
        (
            "RemoteCallRequest",
            "RemoteCallResult",
            "RemoteNode",
            "RemoteStreamEvent",
            "RemoteTransport",
        ),
        "_remote",
    ),
    **dict.fromkeys(
        (
            "DictRoutingPolicy",
            "RoutingPolicy",
            "RoutingRequest",
            "evaluate_policy",
            "predicate_router",
            "union_router",
        ),
        "_routing",
    ),
    "RedisDurableStore": "_store_redis",
    "SQLiteDurableStore": "_store_sqlite",
    **dict.fromkeys(("flow_to_dot", "flow_to_mermaid", "to_dot", "to_mermaid"), "_viz"),
    # Backends load on first use: `import penguiflow.core` loads no store module (nor sqlite3).
    "InMemoryDurableStore": "_store_memory",
    "PostgresDurableStore": "_store_postgres",
    "as_state_store": "_store_history",
}

__all__ = [
    # graph and running
    "OPEN_SEA",
    "ROOKERY",
    "Context",
    "Endpoint",
    "FlowStatistics",
    "ModelRegistry",
    "Node",
    "NodePolicy",
    "PenguiFlow",
    "calls_playbooks",
    "create",
    "current_trace_id",
    # tool catalog
    "NodeSpec",
    "SideEffect",
    "ToolInputExample",
    "ToolLoadingMode",
    "build_catalog",
    "tool",
    # messages
    "WM",
    "BudgetExhausted",
    "FinalAnswer",
    "Headers",
    "Message",
    "StreamChunk",
    "merge_meta",
    # errors
    "CycleError",
    "FlowError",
    "FlowErrorCode",
    "FlowStopped",
    "GraphError",
    "PenguiFlowError",
    "RegistryError",
    "TraceCancelled",
    "TraceEnded",
    "VersionConflict",
    "ScopeMismatch",
    "StoreClosed",
    "StoreError",
    "StoreUnavailable",
    # observability
    "EventHook",
    "ExtraFormatter",
    "FlowEvent",
    "FlowEventType",
    "FlowEventLogger",
    "JsonFormatter",
    "LatencyCallback",
    "Middleware",
    "OverflowPolicy",
    "StructuredFormatter",
    "configure_json_logging",
    "configure_logging",
    "format_flow_event",
    "log_flow_events",
    # routing and patterns
    "DictRoutingPolicy",
    "RoutingPolicy",
    "RoutingRequest",
    "evaluate_policy",
    "join_k",
    "map_concurrent",
    "predicate_router",
    "union_router",
    # subflows
    "PlaybookFactory",
    "call_playbook",
    # streaming
    "chunk_to_ws_json",
    "emit_stream_events",
    "format_sse_event",
    "stream_flow",
    # visualisation
    "flow_to_dot",
    "flow_to_mermaid",
    "to_dot",
    "to_mermaid",
    # durable state
    "DurableStore",
    "InMemoryDurableStore",
    "LogEntry",
    "PostgresDurableStore",
    "Record",
    "RedisDurableStore",
    "SQLiteDurableStore",
    "Scope",
    "as_state_store",
    # journal
    "Durability",
    "Journal",
    "JournalStep",
    "current_step_id",
    "idempotent",
    # distribution hooks
    "BusEnvelope",
    "InMemoryStateStore",
    "MessageBus",
    "RemoteBinding",
    "RemoteCallRequest",
    "RemoteCallResult",
    "RemoteNode",
    "RemoteStreamEvent",
    "RemoteTransport",
    "StateStore",
    "StoredEvent",
]


def _publish(value: object) -> None:
    # Reprs, docs, tracebacks and pickles show the public path (as httpx does); pickle still
    # finds every object, under its own name here. Only classes and functions: type aliases and
    # instances (OPEN_SEA) have no __module__ of their own.
    #
    # Stdlib dataclasses and NamedTuples (NodePolicy, FlowEvent, StoredEvent, ...) keep their
    # real module: pydantic (a TypeAdapter or a model field of that type) resolves their string
    # annotations in sys.modules[cls.__module__], where names such as Any or Mapping are
    # missing, so it could no longer build their schema. Pydantic models are safe to move: their
    # fields are resolved when the class is created (validation, model_rebuild, subclassing and
    # pickle are tested). Only a bare typing.get_type_hints() on a moved class cannot resolve
    # its annotations; use model_fields for models.
    if isinstance(value, type):
        target: type[object] | _FunctionType = _typing.cast(type[object], value)
        if _is_dataclass(target) or _is_named_tuple(target):
            return
    elif isinstance(value, _FunctionType):
        target = value
    else:
        return
    if target.__module__.startswith(f"{__name__}._"):
        target.__module__ = __name__


def _is_named_tuple(cls: type[object]) -> bool:
    return tuple in cls.__mro__ and hasattr(cls, "_fields")


def _publish_imported() -> None:
    namespace = globals()
    for name in __all__:
        if name not in _LAZY:  # lazy names are published when first loaded
            _publish(namespace[name])


_publish_imported()


def __getattr__(name: str) -> object:
    # Rarely needed parts load on first use, keeping `import penguiflow.core` cheap.
    module = _LAZY.get(name)
    if module is not None:
        value = getattr(_importlib.import_module(f"{__name__}.{module}"), name)
        _publish(value)
        globals()[name] = value
        return value
    if name == "__version__":  # importlib.metadata alone costs ~20 ms
        from importlib.metadata import version

        return version("penguiflow-core")
    raise AttributeError(f"module 'penguiflow.core' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
