"""Every ```python block in docs/ and the READMEs runs, so snippets cannot rot.

Each block runs on its own in a fresh interpreter (cwd: a temporary folder). After the block's
top-level code, every function it defines whose name starts with ``test_`` and that takes no
argument is called (awaited with ``asyncio.run`` when it is a coroutine function), so a README
may show a test the way a user writes it.

A block that cannot run on its own says so just before its fence, with a reason::

    <!-- not-run: needs an OpenAI API key -->

Those are reported as skipped with their reason (``pytest -rs`` lists them; the summary test
prints the count per reason). A block whose only content is a ``--8<--`` include of an example's
file (fenced as ```` ```{.python} ````, which ``ruff format`` leaves alone) is run by
``tests/test_examples.py`` and only checked here to name a real example file.
A heading that promises "in N lines" is checked against the block below it.
"""

from __future__ import annotations

import collections
import os
import re
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT_S = 120

NOT_RUN = re.compile(r"^\s*<!--\s*not-run:\s*(?P<reason>.*?)\s*-->\s*$")
# ```python, or ```{.python} (the form an include block uses, so that `ruff format`, which
# formats ```python blocks in Markdown, leaves the --8<-- line alone).
FENCE = re.compile(r"^(?P<indent>\s*)```\s*(?:\{\s*\.(?P<attr>[\w+-]+)[^}]*\}|(?P<lang>[\w+-]*))")
INCLUDE = re.compile(r'^\s*--8<--\s*"(?P<path>[^"]+)"\s*$')
IN_N_LINES = re.compile(r"^#+ .*\bin (?P<n>\d+) lines\b", re.IGNORECASE)


@dataclass(frozen=True)
class Block:
    path: Path
    line: int  # 1-based line of the opening fence
    code: str
    not_run: str | None  # the reason, when marked
    heading: str  # the closest heading above the block

    @property
    def id(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"

    @property
    def include(self) -> str | None:
        lines = [line for line in self.code.splitlines() if line.strip()]
        if len(lines) == 1 and (match := INCLUDE.match(lines[0])):
            return match["path"]
        return None


def markdown_files() -> list[Path]:
    files = [ROOT / "README.md", ROOT / "tools" / "README.md"]
    files += sorted((ROOT / "packages").glob("*/README.md"))
    files += sorted((ROOT / "examples").glob("*/README.md"))
    files += sorted((ROOT / "docs").rglob("*.md"))
    return [f for f in files if f.is_file()]


def python_blocks(path: Path) -> list[Block]:
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    heading = ""
    previous = ""  # the last non-blank line before the current one
    i = 0
    while i < len(lines):
        line = lines[i]
        fence = FENCE.match(line)
        if fence is None:
            if line.startswith("#"):
                heading = line
            if line.strip():
                previous = line
            i += 1
            continue
        indent, lang = fence["indent"], fence["attr"] or fence["lang"]
        start = i
        i += 1
        body: list[str] = []
        while i < len(lines) and not lines[i].strip().startswith("```"):
            body.append(lines[i])
            i += 1
        i += 1  # the closing fence
        if lang in ("python", "py"):
            marker = NOT_RUN.match(previous)
            code = textwrap.dedent("\n".join(body)) if indent else "\n".join(body)
            blocks.append(
                Block(path, start + 1, code, marker["reason"] if marker else None, heading)
            )
        previous = lines[i - 1] if i - 1 < len(lines) else ""
    return blocks


BLOCKS = [block for path in markdown_files() for block in python_blocks(path)]

# What runs after the block: its zero-argument test_* functions, in definition order.
HARNESS = r"""
import asyncio, inspect, sys
code = sys.stdin.read()
namespace = {"__name__": "__main__", "__file__": sys.argv[1]}
exec(compile(code, sys.argv[1], "exec"), namespace)
for name, value in list(namespace.items()):
    if not (name.startswith("test_") and inspect.isfunction(value)):
        continue
    if inspect.signature(value).parameters:
        sys.exit(f"{name} takes arguments (fixtures?): mark the block <!-- not-run: reason -->")
    result = value()
    if inspect.iscoroutine(result):
        asyncio.run(result)
    print(f"snippet: {name} passed")
"""


@pytest.mark.parametrize("block", BLOCKS, ids=[b.id for b in BLOCKS])
def test_python_block_runs(block: Block, tmp_path: Path) -> None:
    if block.not_run is not None:
        pytest.skip(f"not-run: {block.not_run}")
    if (target := block.include) is not None:
        included = ROOT / target
        assert included.is_file(), f"{block.id}: includes {target}, which does not exist"
        assert included.match("examples/*/*.py"), (
            f"{block.id}: only files of examples/<name>/ may be included (tests/test_examples.py "
            f"runs them); {target} is not one"
        )
        pytest.skip(f"included example {target}: run by tests/test_examples.py")
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    env.pop("PYTHONPATH", None)
    proc = subprocess.run(
        [sys.executable, "-W", "error::RuntimeWarning", "-c", HARNESS, block.id],
        input=block.code,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=TIMEOUT_S,
    )
    assert proc.returncode == 0, (
        f"{block.id} failed (exit {proc.returncode}); fix the snippet or mark it with "
        f"<!-- not-run: reason -->\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"
    )


def test_blocks_were_found_and_skips_are_listed(capsys: pytest.CaptureFixture[str]) -> None:
    assert len(BLOCKS) >= 20, f"the extractor found only {len(BLOCKS)} python blocks"
    reasons = collections.Counter(
        block.not_run
        if block.not_run is not None
        else ("included example (tests/test_examples.py)" if block.include else "runs")
        for block in BLOCKS
    )
    with capsys.disabled():
        print(f"\ndocs snippets: {len(BLOCKS)} python blocks")
        for reason, count in reasons.most_common():
            print(f"  {count:3d}  {reason}")
    assert all(block.not_run for block in BLOCKS if block.not_run is not None), (
        "a not-run marker needs a reason"
    )


def test_a_heading_that_counts_lines_tells_the_truth() -> None:
    checked = 0
    for block in BLOCKS:
        match = IN_N_LINES.match(block.heading)
        if match is None:
            continue
        checked += 1
        n = len(block.code.strip("\n").splitlines())
        assert n <= int(match["n"]), f"{block.id}: {block.heading!r} but the block has {n} lines"
    assert checked >= 1, "README.md's 'A flow in N lines' heading was not found"


def test_every_package_has_an_api_reference_page() -> None:
    # A package added under packages/ adds its page (and its nav entry: the strict build checks).
    for package in sorted((ROOT / "packages").glob("*/pyproject.toml")):
        module = "penguiflow." + package.parent.name.removeprefix("penguiflow-").replace("-", "_")
        page = ROOT / "docs" / "reference" / f"{module.removeprefix('penguiflow.')}.md"
        assert page.is_file(), f"{module} has no API reference page: add {page.relative_to(ROOT)}"
        assert f"::: {module}\n" in page.read_text(encoding="utf-8"), (
            f"{page.relative_to(ROOT)} does not render {module} (add a '::: {module}' line)"
        )


def test_include_blocks_are_recognised() -> None:
    includes = [block for block in BLOCKS if block.include]
    assert len(includes) >= 5, "the {.python} include blocks of docs/how-to were not found"
