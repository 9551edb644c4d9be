"""Start-up benchmark: seconds from the command to the first report on disk, and to the end.

``burnscope run burn-triage`` is launched as a user launches it (a fresh process each time) on
a small input; the output folder is polled, so the figure includes imports, settings, the
model, the engine and its warm-up — everything a user waits for. The first, cold run fills
the caches (ONNX export, prompt embeddings); the measured runs after it are warm. Give
``--compare OTHER_BURNSCOPE`` (another installation's ``burnscope`` executable, e.g. an older
release) to measure both in the same session, alternating, so load on a shared machine hits
both alike.

    python -m burnscope.benchmarks.startup -i sample_data --runs 5 --json startup.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from burnscope.benchmarks.environment import cpu_facts

POLL_S = 0.02


def time_one(executable: str, input_path: Path, extra: list[str], timeout_s: float = 600.0) -> dict[str, float]:
    """One run: ``first_report_s`` (command → first report JSON on disk) and ``total_s``."""
    with tempfile.TemporaryDirectory(prefix="burnscope-startup-") as tmp:
        out = Path(tmp) / "out"
        command = [executable, "run", "burn-triage", "-i", str(input_path), "-o", str(out), "-q", *extra]
        started = time.perf_counter()
        proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        first = None
        while proc.poll() is None:
            if first is None and out.is_dir() and any(p.name != "summary.json" for p in out.rglob("*.json")):
                first = time.perf_counter() - started
            if time.perf_counter() - started > timeout_s:
                proc.kill()
                raise TimeoutError(f"{command[0]} ran longer than {timeout_s} s")
            time.sleep(POLL_S)
        total = time.perf_counter() - started
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} exited {proc.returncode}: {proc.stderr.read()[-500:]}")
        return {"first_report_s": round(first if first is not None else total, 3), "total_s": round(total, 3)}


def _stats(values: list[float]) -> dict[str, float]:
    return {"median": round(statistics.median(values), 2), "min": round(min(values), 2), "max": round(max(values), 2)}


def run(executables: dict[str, str], input_path: Path, runs: int, extra: list[str]) -> dict[str, Any]:
    """Cold run each, then ``runs`` warm runs each, alternating."""
    cold = {name: time_one(exe, input_path, extra) for name, exe in executables.items()}
    warm: dict[str, list[dict[str, float]]] = {name: [] for name in executables}
    for _ in range(runs):
        for name, exe in executables.items():
            warm[name].append(time_one(exe, input_path, extra))
    rows = {
        name: {
            "cold": cold[name],
            "warm_first_report_s": _stats([r["first_report_s"] for r in warm[name]]),
            "warm_total_s": _stats([r["total_s"] for r in warm[name]]),
            "runs": warm[name],
        }
        for name in executables
    }
    return {
        "benchmark": "startup",
        "input": str(input_path),
        "options": extra,
        "warm_runs": runs,
        "machine": {"python": platform.python_version(), **cpu_facts(), "load_average": os.getloadavg()},
        "results": rows,
    }


def print_table(result: dict[str, Any]) -> None:
    print(f"start-up of `burnscope run burn-triage` on {result['input']} ({result['warm_runs']} warm runs each)")
    print(f"{'installation':<14}{'cold first report s':>22}{'warm first report s (median, min–max)':>42}{'warm total s':>16}")
    for name, row in result["results"].items():
        w = row["warm_first_report_s"]
        print(f"{name:<14}{row['cold']['first_report_s']:>22.2f}{w['median']:>22.2f} ({w['min']:.2f}–{w['max']:.2f})"
              f"{row['warm_total_s']['median']:>24.2f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-i", "--input", type=Path, required=True, help="input folder (small: the figure is start-up)")
    parser.add_argument("--runs", type=int, default=5, help="warm runs per installation")
    parser.add_argument("--compare", default=None, help="another burnscope executable, measured alternately")
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")
    parser.add_argument("extra", nargs="*", help="more `burnscope run` options (after --)")
    args = parser.parse_args(argv)
    this = shutil.which("burnscope", path=str(Path(sys.executable).parent)) or "burnscope"
    executables = {"this": this, **({"compared": args.compare} if args.compare else {})}
    result = run(executables, args.input, args.runs, args.extra)
    print_table(result)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
