"""The public surface of penguiflow.core is exactly what __all__ documents."""

import types

import penguiflow.core as core

EXPECTED = {
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
    "ScopeMismatch",
    "StoreClosed",
    "StoreError",
    "StoreUnavailable",
    "VersionConflict",
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
    "Durability",
    "Journal",
    "JournalStep",
    "current_step_id",
    "idempotent",
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
}


def test_all_is_exactly_the_public_surface() -> None:
    assert set(core.__all__) == EXPECTED
    assert len(core.__all__) == len(EXPECTED), "duplicates in __all__"


def test_every_exported_name_resolves() -> None:
    for name in core.__all__:
        assert getattr(core, name) is not None


def test_no_other_public_names_leak() -> None:
    # Public submodules (the optional integrations) appear once imported; they are not re-exports.
    public = {
        name
        for name, value in vars(core).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert public - EXPECTED == set()


def test_version_is_the_distribution_version() -> None:
    from importlib.metadata import version

    assert core.__version__ == version("penguiflow-core")
