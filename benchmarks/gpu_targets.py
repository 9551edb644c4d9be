"""What a GPU suite run reached against DESIGN.md's GPU targets, and where the time went.

    python -m burnscope.benchmarks.gpu_targets OUT_DIR > OUT_DIR/targets.md

Reads the JSON files ``benchmarks/gpu_suite.sh`` leaves in ``OUT_DIR`` and prints a markdown
table (target, measured, verdict, source file) and the per-stage breakdown of the GPU path;
a figure whose file is missing is "not measured".
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

#: (name, file candidates (first found wins), how to read the figure, target, higher is better)
TARGETS: tuple[tuple[str, tuple[str, ...], str, float, bool], ...] = (
    ("pipeline incl. decode, sample-size, img/s", ("burn-triage-gpudecode-batch32.json", "burn-triage-gpu-batch32.json"),
     "images_per_s", 3000.0, True),
    ("pipeline incl. decode, 12 MP photos, img/s", ("burn-triage-gpudecode-12mp-batch32.json",), "images_per_s", 500.0, True),
    ("DICOM → report, batch 1 paced, p99 ms", ("burn-triage-gpudecode-paced.json", "burn-triage-gpu-paced.json"),
     "latency_ms.p99", 5.0, False),
    ("image tower, batch 256, img/s", ("tower-options.json",), "best_option_at_largest_batch.images_per_s", 11000.0, True),
)


def _read(out: Path, names: tuple[str, ...]) -> tuple[str | None, dict[str, Any] | None]:
    for name in names:
        path = out / name
        if path.is_file():
            try:
                return name, json.loads(path.read_text())
            except (OSError, ValueError):
                continue
    return None, None


def _dig(data: Any, dotted: str) -> Any:
    for key in dotted.split("."):
        if not isinstance(data, dict) or key not in data:
            return None
        data = data[key]
    return data


def targets_table(out: Path) -> list[str]:
    lines = ["| target | goal | measured | verdict | from |", "|---|---:|---:|---|---|"]
    for name, files, key, goal, higher in TARGETS:
        source, data = _read(out, files)
        value = _dig(data, key) if data else None
        if not isinstance(value, (int, float)):
            lines.append(f"| {name} | {'≥' if higher else '≤'} {goal:,.0f} | not measured | – | {source or '–'} |")
            continue
        met = value >= goal if higher else value <= goal
        lines.append(f"| {name} | {'≥' if higher else '≤'} {goal:,.0f} | {value:,.1f} | {'met' if met else '**not met**'} | {source} |")
    return lines


def stages_table(out: Path, batch: str = "32") -> list[str]:
    lines = []
    for path in sorted(out.glob("stages-gpu-*.json")):
        data = json.loads(path.read_text())
        for name, inst in data.get("installations", {}).items():
            entry = inst.get("batches", {}).get(batch)
            if not entry:
                continue
            lines += ["", f"Per-stage, batch {batch}, {path.stem.removeprefix('stages-gpu-')} ({entry['images']} images; "
                      "ms per image, each stage synchronised)", "", "| stage | wall ms | CPU ms |", "|---|---:|---:|"]
            for stage, value in {**entry["stages"], **entry["sums"]}.items():
                lines.append(f"| {stage} | {value['wall_ms']:.3f} | {value['cpu_ms']:.3f} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    out = Path(args[0])
    print("# GPU targets (DESIGN.md §7)\n")
    print("\n".join(targets_table(out) + stages_table(out)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
