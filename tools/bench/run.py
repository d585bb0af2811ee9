"""PenguiFlow benchmarks: every figure next to a raw-asyncio baseline measured in the same run.

Run ``uv run python tools/bench/run.py`` (``--quick`` for a smoke run, ``--only chain_5`` to pick
scenarios, ``--reps N`` for more repetitions). Each repetition runs the penguiflow variant and
the raw-asyncio variant back to back, alternating which goes first, so machine noise hits both;
the table shows medians and the ratio penguiflow / baseline. Results are also written as JSON to
``tools/bench/results/``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import platform
import re
import statistics
import sys
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent))

import import_time  # noqa: E402
from scenarios import SCENARIOS, Scenario, Variant  # noqa: E402

RESULTS = Path(__file__).parent / "results"


@dataclass
class Row:
    """One line of the table."""

    scenario: str
    metric: str
    unit: str
    penguiflow: list[float] = field(default_factory=list[float])
    baseline: list[float] = field(default_factory=list[float])
    target: float | None = None
    higher_is_better: bool = False
    label: str = ""

    @property
    def ratio(self) -> float:
        pf, base = statistics.median(self.penguiflow), statistics.median(self.baseline)
        if self.higher_is_better:
            return base / pf if pf else float("inf")
        return pf / base if base else float("inf")


def run_pair(
    pf: Variant,
    base: Variant,
    first_pf: bool,
) -> tuple[dict[str, float], dict[str, float]]:
    """Run both variants once each (fresh event loop each), in the given order."""
    order = [pf, base] if first_pf else [base, pf]
    results: list[dict[str, float]] = []
    for variant in order:
        gc.collect()
        results.append(asyncio.run(variant()))
    return (results[0], results[1]) if first_pf else (results[1], results[0])


def measure(scenario: Scenario, reps: int, quick: bool) -> list[Row]:
    """Interleave ``reps`` repetitions of one scenario; one Row per metric."""
    rows: dict[str, Row] = {}
    pf, base = scenario.build(quick)
    run_pair(pf, base, True)  # warm-up: imports, allocator, first-call caches
    for rep in range(reps):
        pf_result, base_result = run_pair(pf, base, rep % 2 == 0)
        for metric, spec in scenario.metrics.items():
            row = rows.setdefault(
                metric,
                Row(
                    scenario.name,
                    metric,
                    spec.unit,
                    target=spec.target,
                    higher_is_better=spec.higher_is_better,
                    label=scenario.label,
                ),
            )
            row.penguiflow.append(pf_result[metric])
            row.baseline.append(base_result[metric])
    return list(rows.values())


def print_table(rows: list[Row]) -> None:
    """The human-readable table: medians, ratio, target, verdict."""
    header = (
        f"{'scenario':<22} {'metric':<22} {'penguiflow':>12} {'raw asyncio':>12} "
        f"{'ratio':>7} {'target':>7}  ok"
    )
    print(header)
    print("-" * len(header))
    for row in rows:
        pf = statistics.median(row.penguiflow)
        base = statistics.median(row.baseline)
        target = f"{row.target:g}x" if row.target is not None else "-"
        ok = "" if row.target is None else ("yes" if row.ratio <= row.target else "NO")
        print(
            f"{row.scenario:<22} {row.metric + ' (' + row.unit + ')':<22} {pf:>12.2f} "
            f"{base:>12.2f} {row.ratio:>6.2f}x {target:>7}  {ok}"
        )
    labels = {row.scenario: row.label for row in rows if row.label}
    if labels:
        print()
        for name, label in labels.items():
            print(f"{name:<22} {label}")


def installed_size(root: str = "penguiflow-core") -> tuple[int, int]:
    """(bytes, distributions) of ``root`` and everything it requires, as installed here."""
    seen: set[str] = set()
    todo = [root]
    total = 0
    while todo:
        name = canonical(todo.pop())
        if name in seen:
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:  # a requirement whose marker excludes this Python
            continue
        seen.add(name)
        for file in dist.files or ():
            path = Path(str(dist.locate_file(file)))
            if path.is_file():
                total += path.stat().st_size
        for requirement in dist.requires or ():
            if "extra ==" not in requirement:
                todo.append(re.split(r"[\s\[<>=!~;(]", requirement, maxsplit=1)[0])
    return total, len(seen)


def canonical(name: str) -> str:
    """PEP 503 normalised distribution name."""
    return re.sub(r"[-_.]+", "-", name).lower()


def measure_facts(runs: int) -> dict[str, float]:
    """Figures without a raw-asyncio twin: import cost and install size."""
    print("measuring import time and install size ...", file=sys.stderr, flush=True)
    result = import_time.measure(sys.executable, runs)
    size, dists = installed_size()
    return {
        "import_ms": result.cost_ms,
        "import_base_ms": result.baseline_ms,
        "install_mib": size / 2**20,
        "install_dists": float(dists),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--reps", type=int, default=5, help="repetitions per scenario (median)")
    parser.add_argument("--quick", action="store_true", help="small sizes, 2 repetitions")
    parser.add_argument("--only", default="", help="comma-separated scenario names")
    parser.add_argument("--json", type=Path, default=None, help="where to write the JSON results")
    args = parser.parse_args()
    reps = 2 if args.quick else args.reps
    wanted = {name for name in args.only.split(",") if name}
    unknown = wanted - {s.name for s in SCENARIOS}
    if unknown:
        parser.error(f"unknown scenarios {sorted(unknown)}; have {[s.name for s in SCENARIOS]}")
    rows: list[Row] = []
    started = time.perf_counter()
    for scenario in SCENARIOS:
        if wanted and scenario.name not in wanted:
            continue
        print(f"running {scenario.name} ...", file=sys.stderr, flush=True)
        rows.extend(measure(scenario, reps, args.quick))
    facts = {} if wanted else measure_facts(runs=5 if args.quick else 15)
    print()
    print(
        f"python {platform.python_version()} on {platform.machine()}, "
        f"{reps} repetitions (medians), {time.perf_counter() - started:.0f}s"
    )
    print_table(rows)
    if facts:
        print()
        print(
            f"import penguiflow.core on top of asyncio, pydantic and anyio: "
            f"{facts['import_ms']:.1f} ms (target <= 40 ms; they take "
            f"{facts['import_base_ms']:.1f} ms)"
        )
        print(
            f"installed size of penguiflow-core and its {int(facts['install_dists']) - 1} "
            f"dependencies: {facts['install_mib']:.1f} MiB"
        )
    out = args.json or RESULTS / f"bench-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "python": platform.python_version(),
                "machine": platform.machine(),
                "reps": reps,
                "facts": facts,
                "rows": [
                    {
                        "scenario": r.scenario,
                        "metric": r.metric,
                        "unit": r.unit,
                        "label": r.label,
                        "penguiflow_median": statistics.median(r.penguiflow),
                        "baseline_median": statistics.median(r.baseline),
                        "ratio": r.ratio,
                        "target": r.target,
                        "penguiflow": r.penguiflow,
                        "baseline": r.baseline,
                    }
                    for r in rows
                ],
            },
            indent=2,
        )
    )
    print(f"\nJSON: {out}")


if __name__ == "__main__":
    main()
