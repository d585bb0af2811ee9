"""Measure what `import penguiflow.core` costs on top of its own dependencies.

    uv run python tools/import_time.py [--runs 15] [--check] [--budget-ms 40]

Each sample is a fresh interpreter that times its import statement with `time.perf_counter()`
and prints the figure, so interpreter startup is not counted. Baseline samples (asyncio,
pydantic's BaseModel, Field and TypeAdapter, anyio) and penguiflow samples (the same plus
`penguiflow.core`) are interleaved, alternating which goes first, so drift on the machine (CPU
frequency, caches, other load) hits both alike.
The reported cost is the difference of the two medians.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
from dataclasses import dataclass

# `import pydantic` alone is lazy: `from pydantic import BaseModel, Field, TypeAdapter` loads
# pydantic's model machinery (about 120 ms). Any typed application pays that, so the baseline
# loads it too; otherwise
# the figure would charge pydantic's own start-up to penguiflow. Likewise asyncio: penguiflow is an
# asyncio runtime, and every program that runs a flow has imported it.
BASELINE = "import asyncio; from pydantic import BaseModel, Field, TypeAdapter; import anyio"
WITH_CORE = BASELINE + "; import penguiflow.core"

_CHILD = """\
import time
_start = time.perf_counter()
{modules}
print(time.perf_counter() - _start)
"""


@dataclass(frozen=True)
class Result:
    """Median import times of the two kinds of run, in milliseconds."""

    baseline_ms: float
    with_core_ms: float
    runs: int

    @property
    def cost_ms(self) -> float:
        return self.with_core_ms - self.baseline_ms


# Installed code runs from cached bytecode; without it every sample would time the compiler. Let the
# warm-up runs write the caches even where the environment says not to (PYTHONDONTWRITEBYTECODE).
_CHILD_ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def time_import(python: str, modules: str) -> float:
    """Import `modules` in a fresh interpreter and return the seconds it took."""
    completed = subprocess.run(
        [python, "-c", _CHILD.format(modules=modules)],
        capture_output=True,
        text=True,
        check=False,
        env=_CHILD_ENV,
    )
    if completed.returncode != 0:
        raise SystemExit(f"{modules} failed:\n{completed.stderr}")
    return float(completed.stdout.strip())


def measure(python: str, runs: int) -> Result:
    # One unrecorded run of each first, so bytecode caches are written before timing starts.
    time_import(python, BASELINE)
    time_import(python, WITH_CORE)
    baseline: list[float] = []
    with_core: list[float] = []
    for i in range(runs):
        if i % 2 == 0:
            baseline.append(time_import(python, BASELINE))
            with_core.append(time_import(python, WITH_CORE))
        else:
            with_core.append(time_import(python, WITH_CORE))
            baseline.append(time_import(python, BASELINE))
    return Result(
        baseline_ms=statistics.median(baseline) * 1000,
        with_core_ms=statistics.median(with_core) * 1000,
        runs=runs,
    )


def report(result: Result) -> str:
    rows = [
        (BASELINE, result.baseline_ms),
        ("... + import penguiflow.core", result.with_core_ms),
        ("penguiflow.core on top", result.cost_ms),
    ]
    width = max(len(label) for label, _ in rows)
    lines = [f"median of {result.runs} runs each, fresh interpreter per run"]
    lines += [f"{label:<{width}}  {ms:8.1f} ms" for label, ms in rows]
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=15, help="samples of each kind (default 15)")
    parser.add_argument(
        "--check",
        action="store_true",
        help="exit non-zero when the cost exceeds --budget-ms",
    )
    parser.add_argument(
        "--budget-ms",
        type=float,
        default=40.0,
        help="allowed cost of penguiflow.core in ms (default 40)",
    )
    parser.add_argument(
        "--python",
        default=sys.executable,
        help="interpreter to measure (default: the one running this script)",
    )
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    runs: int = args.runs
    python: str = args.python
    budget_ms: float = args.budget_ms
    result = measure(python, runs)
    print(report(result))
    if args.check and result.cost_ms > budget_ms:
        print(
            f"FAIL: penguiflow.core adds {result.cost_ms:.1f} ms, budget is {budget_ms:.1f} ms",
            file=sys.stderr,
        )
        return 1
    if args.check:
        print(f"ok: within the {budget_ms:.1f} ms budget")
    return 0


if __name__ == "__main__":
    sys.exit(main())
