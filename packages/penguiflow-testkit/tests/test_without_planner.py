"""The testkit works without penguiflow-planner; only the LLM doubles need it."""

import json
import subprocess
import sys
import textwrap

BLOCK_PLANNER = textwrap.dedent(
    """
    import sys

    class Block:
        def find_spec(self, name, path=None, target=None):
            if name == "penguiflow.planner" or name.startswith("penguiflow.planner."):
                raise ImportError("blocked " + name)
            return None

    sys.meta_path.insert(0, Block())
    """
)


def run(code: str) -> str:
    completed = subprocess.run(
        [sys.executable, "-c", BLOCK_PLANNER + textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return completed.stdout


def test_the_testkit_and_provider_server_import_without_the_planner() -> None:
    out = run(
        """
        import json
        import penguiflow.testkit as testkit
        from penguiflow.testkit import ProviderServer, ReplayMismatch, ScriptExhausted, run_one
        names = [ProviderServer, ReplayMismatch, ScriptExhausted, run_one]
        print(json.dumps([value.__name__ for value in names]))
        """
    )
    assert json.loads(out) == ["ProviderServer", "ReplayMismatch", "ScriptExhausted", "run_one"]


def test_the_llm_doubles_say_what_to_install_without_the_planner() -> None:
    out = run(
        """
        import penguiflow.testkit as testkit
        for name in ("ScriptedLLM", "FunctionLLM", "LLMCall", "LLMCallInfo", "Cassette"):
            try:
                getattr(testkit, name)
            except ImportError as exc:
                print(name, exc)
        """
    )
    lines = out.strip().splitlines()
    assert len(lines) == 5
    for line in lines:
        assert 'pip install "penguiflow-testkit[planner]"' in line
