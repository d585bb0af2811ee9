"""The public surface of penguiflow.planner is exactly what __all__ documents."""

import json
import subprocess
import sys
import types

import penguiflow.planner as planner

EXPECTED = {
    # the planner
    "ReactPlanner",
    "PlannerAction",
    "PlannerBudget",
    "PlannerFinish",
    "PlannerPause",
    "PlannerRequest",
    "PlannerResume",
    "PlannerStatistics",
    "FinalPayload",
    "RunUsage",
    "Interrupt",
    "Approval",
    "ToolContext",
    "ToolPolicy",
    "ReflectionConfig",
    "ReflectionCriteria",
    "ReflectionCritique",
    "CompactionConfig",
    "Trajectory",
    "TrajectoryStep",
    "PlannerEvent",
    "PlannerEventType",
    "SteeringEvent",
    "SteeringEventType",
    "SteeringInbox",
    "ShortTermMemory",
    "ShortTermMemoryConfig",
    "MemoryBudget",
    "MemoryIsolation",
    "MemoryKey",
    "MemoryHealth",
    "MemorySnapshot",
    "ConversationTurn",
    "TrajectoryDigest",
    # the LLM boundary
    "JSONLLMClient",
    "LLMMessage",
    "LLMResult",
    "ModelPrice",
    "StreamCallback",
    "Usage",
    "classify_llm_error",
    "LLMRetryPolicy",
    # native clients
    "AnthropicJSONClient",
    "OpenAIJSONClient",
    # token counting
    "CharCounter",
    "TiktokenCounter",
    "TokenCounter",
    # errors
    "InterruptAnswerError",
    "LLMError",
    "LLMErrorType",
    "MemoryBudgetExceeded",
    "PlannerError",
    "PlannerNotOpen",
    "PlannerUsageError",
    "ResumeTokenInvalid",
}


def test_all_is_exactly_the_public_surface() -> None:
    assert set(planner.__all__) == EXPECTED
    assert len(planner.__all__) == len(EXPECTED), "duplicates in __all__"


def test_every_public_name_is_importable_and_documented() -> None:
    for name in planner.__all__:
        value = getattr(planner, name)
        assert value.__doc__, f"{name} has no docstring"


def test_no_other_public_names_leak_from_private_modules() -> None:
    public = {
        name
        for name, value in vars(planner).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    lazy = set(planner._LAZY)  # pyright: ignore[reportPrivateUsage]  # appear once first used
    assert public - lazy == EXPECTED - lazy
    assert lazy <= EXPECTED


def test_importing_the_planner_loads_neither_memory_nor_the_native_clients() -> None:
    code = (
        "import sys, penguiflow.planner; "
        "names = [m.rsplit('.', 1)[1] for m in sys.modules "
        "if m.startswith('penguiflow.planner.')]; "
        "print(sorted(set(names) & {'_memory', '_memory_types', '_openai', '_anthropic'}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "[]"


def test_version_is_the_distribution_version() -> None:
    from importlib.metadata import version

    assert planner.__version__ == version("penguiflow-planner")


def test_importing_the_planner_loads_no_sdk_and_no_sibling_but_core() -> None:
    code = (
        "import json, sys, penguiflow.planner; "
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('openai', 'anthropic', 'tiktoken', 'httpx', 'httpx2', 'penguiflow'))))"
    )
    completed = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    loaded: list[str] = json.loads(completed.stdout)
    foreign = [
        name
        for name in loaded
        if name not in ("penguiflow", "penguiflow.core", "penguiflow.planner")
        and not name.startswith(("penguiflow.core.", "penguiflow.planner."))
    ]
    assert "penguiflow.planner" in loaded
    assert foreign == [], f"importing penguiflow.planner also imported {foreign}"
