"""ReactPlanner: immutable configuration, and the calls that make runs (run, resume, as_node)."""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import AsyncExitStack
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self, cast

import anyio
from pydantic import TypeAdapter

from penguiflow.core import (
    DurableStore,
    InMemoryDurableStore,
    Message,
    ModelRegistry,
    Node,
    NodePolicy,
    NodeSpec,
    PenguiFlow,
    build_catalog,
)

from ._as_node import serve
from ._background import BackgroundWork
from ._errors import PlannerNotOpen, PlannerUsageError
from ._events import PlannerEvent, PlannerEventCallback, PlannerEventType, deliver
from ._llm import JSONLLMClient
from ._pause import MISSING, PauseBook, apply_answers, budget_of, restore
from ._prompts import action_format, system_prompt
from ._react_args import check_arguments, checked_client, migrate_old_names
from ._records import load_memory, persist, record_memory
from ._retry import LLMRetryPolicy
from ._run import Run
from ._setup import check_json_context, has_run, tool_flow
from ._steering import SteeringInbox
from ._tokens import CharCounter, TokenCounter
from ._types import (
    CompactionConfig,
    PlannerBudget,
    PlannerFinish,
    PlannerPause,
    PlannerStatistics,
    ReflectionConfig,
    ToolPolicy,
)

if TYPE_CHECKING:
    from ._memory import ShortTermMemory
    from ._memory_types import ShortTermMemoryConfig

__all__ = ["ReactPlanner"]

logger = logging.getLogger("penguiflow.planner")


class ReactPlanner[OutputT]:
    """A ReAct planner: an LLM chooses tools step by step until it answers.

    One instance serves any number of concurrent runs (all per-run state lives in a run object
    made per call). Tools run through the PenguiFlow runtime (``flow.call_node``), so their
    ``NodePolicy`` — timeouts, retries, concurrency — and ``FlowEvent``s apply. Open it with
    ``async with`` for background work (async middlewares, rolling memory summaries).
    """

    def __init__(
        self,
        llm_client: JSONLLMClient | None = None,
        *,
        catalog: Sequence[NodeSpec] | None = None,
        nodes: Sequence[Any] | None = None,
        registry: ModelRegistry | None = None,
        output_type: type[OutputT] = str,
        budget: PlannerBudget | None = None,
        max_parallel: int = 8,
        absolute_max_parallel: int = 50,
        repair_attempts: int = 3,
        max_consecutive_arg_failures: int = 3,
        reflection: ReflectionConfig | None = None,
        memory: ShortTermMemoryConfig | ShortTermMemory | None = None,
        store: DurableStore | None = None,
        pause_enabled: bool = True,
        pause_ttl_s: float = 86_400,
        tool_policy: ToolPolicy | None = None,
        system_prompt_extra: str | None = None,
        compaction: CompactionConfig | None = None,
        token_counter: TokenCounter | None = None,
        json_schema_mode: bool = True,
        stream_final_response: bool = False,
        llm_timeout_s: float = 120.0,
        llm_retry: LLMRetryPolicy | None = None,
        observation_max_chars: int = 20_000,
        event_callback: PlannerEventCallback | None = None,
        middlewares: Sequence[Any] = (),
        on_flow_event: Callable[[Any], None] | None = None,
        persist_trajectories: bool = True,
        persist_events: bool = False,
        time_source: Callable[[], float] = time.time,
        **old: Any,
    ) -> None:
        budget, compaction, store, reflection, memory = migrate_old_names(
            old, budget, compaction, store, reflection, memory
        )
        llm_client = checked_client(llm_client)
        check_arguments(
            catalog,
            nodes,
            output_type,
            max_parallel=max_parallel,
            absolute_max_parallel=absolute_max_parallel,
            llm_timeout_s=llm_timeout_s,
            pause_ttl_s=pause_ttl_s,
            repair_attempts=repair_attempts,
            max_consecutive_arg_failures=max_consecutive_arg_failures,
            observation_max_chars=observation_max_chars,
        )
        specs = list(catalog) if catalog is not None else build_catalog(nodes or (), registry)
        policy = tool_policy or ToolPolicy()
        self.llm_client: JSONLLMClient = llm_client
        self.catalog: tuple[NodeSpec, ...] = tuple(specs)
        self.visible_tools: dict[str, NodeSpec] = {
            s.name: s for s in specs if policy.allows(s.name, list(s.tags))
        }
        self.output_type: type[OutputT] = output_type
        self.output_adapter: TypeAdapter[Any] = TypeAdapter(output_type)
        self.budget: PlannerBudget = budget or PlannerBudget()
        self.max_parallel = max_parallel
        self.absolute_max_parallel = absolute_max_parallel
        self.repair_attempts = repair_attempts
        self.max_consecutive_arg_failures = max_consecutive_arg_failures
        self.reflection = reflection
        self.store: DurableStore = store if store is not None else InMemoryDurableStore()
        self._store_given = store is not None
        self.pause_enabled = pause_enabled
        self.compaction = compaction
        self.token_counter: TokenCounter = token_counter or CharCounter()
        self.json_schema_mode = json_schema_mode
        self.stream_final_response = stream_final_response
        self.llm_timeout_s = llm_timeout_s
        self.llm_retry: LLMRetryPolicy = llm_retry or LLMRetryPolicy()
        self.observation_max_chars = observation_max_chars
        self.event_callback = event_callback
        self.persist_trajectories = persist_trajectories
        self.persist_events = persist_events
        self.time_source = time_source
        self.memory: ShortTermMemory | None = self._memory_of(memory, llm_client)
        """The short-term memory manager (None without ``memory=``)."""
        tools = list(self.visible_tools.values())
        self.system: str = system_prompt(tools, output_type, system_prompt_extra)
        self.action_format: dict[str, Any] = (
            action_format(tools, output_type) if json_schema_mode else {"type": "json_object"}
        )
        self._pauses: PauseBook = PauseBook(self.store, pause_ttl_s, time_source)
        self.middlewares: tuple[Any, ...] = tuple(middlewares)
        self.on_flow_event = on_flow_event
        self.tool_flow: PenguiFlow = tool_flow(specs, middlewares, on_flow_event)
        self.counters: Counter[str] = Counter()
        self.drain_timeout_s: float = 5.0
        """How long ``aclose()`` waits for background work before cancelling what is left."""
        self._active = 0
        self._work = BackgroundWork()
        self._stack: AsyncExitStack | None = None

    # -------------------------------------------------------------- lifecycle
    async def __aenter__(self) -> Self:
        if self._stack is not None:
            raise PlannerUsageError(
                "this planner is already open: open it once (`async with planner:`) and share it"
            )
        if has_run(self.tool_flow):  # a flow runs once: opened again, a fresh private flow
            self.tool_flow = tool_flow(self.catalog, self.middlewares, self.on_flow_event)
        stack = AsyncExitStack()
        await stack.__aenter__()
        try:
            await stack.enter_async_context(self.tool_flow.running())
            self._work.group = await stack.enter_async_context(anyio.create_task_group())
            if self.memory is not None:
                await stack.enter_async_context(self.memory.running())
        except BaseException:
            self._work.group = None
            await stack.aclose()
            raise
        self._stack = stack
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Drain background work (up to ``drain_timeout_s``), cancel the rest, stop the tool flow.

        Call it from the task that opened the planner (``async with`` does). No task it started
        outlives it. Idempotent.
        """
        stack, self._stack = self._stack, None
        if stack is None:
            return
        work = self._work
        try:
            await work.drain(self.drain_timeout_s)
            if work.group is not None:
                work.group.cancel_scope.cancel()
        finally:
            work.group = None
            await stack.aclose()

    async def spawn(self, func: Callable[[], Awaitable[None]], *, what: str) -> None:
        """Run ``func()`` as background work of the planner (a rolling summary, a buffered write).

        Open, it runs in the planner's task group and is counted in
        ``statistics().background_tasks`` until it ends (its exceptions are logged, never
        raised: no run waits for it). Unopened, it runs inline now (logged once at INFO).
        """
        await self._work.spawn(func, what=what)

    # -------------------------------------------------------------------- runs
    async def run(
        self,
        query: str,
        *,
        llm_context: Mapping[str, Any] | None = None,
        tool_context: Mapping[str, Any] | None = None,
        memory_key: Any = None,
        steering: SteeringInbox | None = None,
        budget: PlannerBudget | None = None,
        trace_id: str | None = None,
        event_callback: PlannerEventCallback | None = None,
        _flow_context: Any = None,
        _deadline_at: float | None = None,
        _chunk_sink: Callable[[str], None] | None = None,
    ) -> PlannerFinish[OutputT] | PlannerPause:
        """Plan and act until the query is answered, a budget ends the run, or a tool pauses."""
        context = dict(llm_context or {})
        check_json_context(context)
        self._check_open()
        run = Run(
            self,
            query=query,
            llm_context=context,
            tool_context=tool_context or {},
            memory_key=memory_key,
            steering=steering,
            budget=budget or self.budget,
            trace_id=trace_id,
            listeners=self._listeners(event_callback),
            flow_context=_flow_context,
            deadline_at=_deadline_at,
        )
        run.chunk_sink = _chunk_sink
        return await self._execute(run)

    async def resume(
        self,
        token: str,
        answer: Any = MISSING,
        *,
        answers: Mapping[str, Any] | None = None,
        memory_key: Any = None,
        tool_context: Mapping[str, Any] | None = None,
        steering: SteeringInbox | None = None,
        event_callback: PlannerEventCallback | None = None,
        user_input: Any = MISSING,
        _flow_context: Any = None,
        _deadline_at: float | None = None,
        _chunk_sink: Callable[[str], None] | None = None,
    ) -> PlannerFinish[OutputT] | PlannerPause:
        """Answer a pause (``answer`` for its one interrupt, or ``answers={id: value}``)."""
        if user_input is not MISSING:  # the original planner's keyword
            if answer is not MISSING:
                raise PlannerUsageError("pass answer= or user_input= (its old name), not both")
            answer = user_input
        self._check_open()
        data, key, scope = await self._pauses.take(token, memory_key)
        budget, deadline_left = budget_of(data)
        deadline_at = None if deadline_left is None else self.time_source() + deadline_left
        if _deadline_at is not None:  # an outer deadline (a flow message's) caps it
            deadline_at = _deadline_at if deadline_at is None else min(deadline_at, _deadline_at)
        run = Run(
            self,
            query=data["trajectory"]["query"],
            llm_context=data["trajectory"]["llm_context"],
            tool_context=tool_context or {},
            memory_key=memory_key,
            steering=steering,
            budget=budget,
            trace_id=data["trace_id"],
            listeners=self._listeners(event_callback),
            flow_context=_flow_context,
            deadline_at=deadline_at,
            run_id=data["run_id"],
        )
        run.chunk_sink = _chunk_sink
        restore(run, data)
        assert run.pending is not None
        try:
            apply_answers(run.pending, answer, answers)
        except Exception:
            await self._pauses.put_back(data, key, scope)
            raise
        self.counters["resumes"] += 1
        run.event(PlannerEventType.RESUME, step=run.pending.step)
        return await self._execute(run)

    async def _execute(self, run: Run) -> PlannerFinish[OutputT] | PlannerPause:
        events: list[PlannerEvent] = []
        if self.persist_events:
            run.listeners = (*run.listeners, events.append)
        self._active += 1
        try:
            if self.memory is not None:
                await load_memory(self.memory, run)
            result = await run.execute()
        finally:
            self._active -= 1
        self.counters["tool_calls"] += run.tool_calls
        if self.memory is not None and isinstance(result, PlannerFinish):
            await record_memory(self.memory, run, result)
        trajectory = self.persist_trajectories and self._store_given
        if trajectory or events:  # buffered while open
            await self.spawn(persist(self, run, trajectory, events), what="run records")
        return cast("PlannerFinish[OutputT] | PlannerPause", result)

    def _memory_of(self, memory: Any, llm_client: JSONLLMClient) -> ShortTermMemory | None:
        """The memory manager for ``memory=`` (a config builds one on the planner's store)."""
        if memory is None:
            return None
        from ._memory import ShortTermMemory  # loaded only by planners with memory
        from ._memory_types import ShortTermMemoryConfig

        if not isinstance(memory, ShortTermMemoryConfig):
            return cast(ShortTermMemory, memory)
        return ShortTermMemory(
            memory,
            store=self.store,
            llm=llm_client,
            token_counter=self.token_counter,
            on_event=self._memory_event,
            time_source=self.time_source,
        )

    def _memory_event(self, kind: str, extra: Mapping[str, Any]) -> None:
        """A memory health change for the planner's listener (no run: it is background work)."""
        if self.event_callback is not None:
            deliver(
                (self.event_callback,),
                PlannerEvent(
                    event_type=PlannerEventType.MEMORY_HEALTH,
                    ts=time.time(),
                    run_id="",
                    trace_id="",
                    extra=dict(extra),
                ),
            )

    def _listeners(self, extra: PlannerEventCallback | None) -> tuple[PlannerEventCallback, ...]:
        return tuple(cb for cb in (self.event_callback, extra) if cb is not None)

    def _check_open(self) -> None:
        if self.middlewares and self._stack is None:
            raise PlannerNotOpen(
                "a planner with async middlewares must be open: `async with ReactPlanner(...) as "
                "planner:`"
            )

    # --------------------------------------------------------------- as a node
    def as_node(
        self,
        name: str = "planner",
        *,
        policy: NodePolicy | None = None,
        tool_context: Mapping[str, Any] | None = None,
    ) -> Node:
        """This planner as a flow node: a query (or request/resume) in, the outcome out.

        The payload is a ``str`` query, a ``PlannerRequest`` or a ``PlannerResume``; the node
        returns the same envelope with a ``PlannerFinish`` / ``PlannerPause`` payload. Tools run
        through the outer flow (``ctx.call_node``); ``flow.cancel(trace_id)`` cancels the run;
        ``Message.deadline_s`` caps its deadline; with ``stream_final_response`` the answer also
        streams as ``StreamChunk``s.
        """
        planner = self
        fixed = dict(tool_context or {})

        async def planner_node(message: Message, ctx: Any) -> Message:
            return message.with_payload(await serve(planner, message, ctx, fixed))

        planner_node.__name__ = name
        return Node(planner_node, name=name, policy=policy or NodePolicy(validate="none"))

    # ------------------------------------------------------------ introspection
    def statistics(self) -> PlannerStatistics:
        """A frozen snapshot of the planner's counters."""
        return PlannerStatistics(
            active_runs=self._active,
            background_tasks=self._work.count,
            llm_calls=self.counters["llm_calls"],
            tool_calls=self.counters["tool_calls"],
            pauses_issued=self.counters["pauses_issued"],
            resumes=self.counters["resumes"],
        )

    def __repr__(self) -> str:
        return f"ReactPlanner(tools={sorted(self.visible_tools)}, output_type={self.output_type!r})"
