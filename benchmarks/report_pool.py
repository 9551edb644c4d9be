"""Reporting off the hot path: images/s of the service with the standards formats rendered in a
pool of worker processes vs in the graph (``reporting.workers: 0``), in the same run.

``python -m burnscope.benchmarks.report_pool --json OUT.json`` (results in
``docs/benchmarks/service-cpu.md``): all six formats (json, txt, sr, pdf, pdf_dcm, fhir); for each
pool size a burst of ``--burst`` images (:func:`burnscope.benchmarks.service_load.capacity`),
the sizes alternating over ``--rounds`` rounds so that a change in the machine's load hits
both alike; medians reported.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
from pathlib import Path
from typing import Any

from burnscope.benchmarks.environment import cpu_facts
from burnscope.benchmarks.service_load import capacity, service_components

ALL_SIX = ["json", "txt", "sr", "pdf", "pdf_dcm", "fhir"]


def compare(settings: dict[str, Any], components: Any, workers: tuple[int, ...] = (0, 1, 2), burst: int = 40,
            rounds: int = 2, images: str | Path | None = None) -> dict[str, Any]:
    runs: dict[int, list[dict[str, Any]]] = {w: [] for w in workers}
    for _ in range(rounds):
        for w in workers:
            s = copy.deepcopy(settings)
            s["report"]["formats"] = list(ALL_SIX)
            s["reporting"]["workers"] = w
            runs[w].append(capacity(s, components, n=burst, images=images))
            print(f"workers {w}: {runs[w][-1]['images_per_s']} img/s", flush=True)
    rows = []
    for w, rs in runs.items():
        rows.append({"reporting_workers": w, "where": "in the graph" if w == 0 else f"pool of {w}",
                     "images_per_s_median": round(statistics.median(r["images_per_s"] for r in rs), 2),
                     "images_per_s_runs": [r["images_per_s"] for r in rs],
                     "p99_ms_median": round(statistics.median(r["latency_ms"]["p99"] for r in rs), 1),
                     "render_ms": rs[-1]["stage_ms"].get("render"), "inference_ms": rs[-1]["stage_ms"].get("inference")})
    base = rows[0]["images_per_s_median"]
    for r in rows:
        r["speedup"] = round(r["images_per_s_median"] / base, 2) if base else None
    return {"formats": ALL_SIX, "burst": burst, "rounds": rounds, "rows": rows}


def table(result: dict[str, Any]) -> str:
    lines = ["| reporting | images/s (median) | runs | speed-up | burst p99 ms | render ms/image | inference ms/image |",
             "|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        lines.append(f"| {r['where']} | {r['images_per_s_median']} | {r['images_per_s_runs']} | {r['speedup']}× | "
                     f"{r['p99_ms_median']} | {r['render_ms']} | {r['inference_ms']} |")
    return "\n".join(lines)


def _main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-c", "--config")
    parser.add_argument("--model-config", default="biomedclip-tiny")
    parser.add_argument("--workers", default="0,1,2")
    parser.add_argument("--burst", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--images")
    parser.add_argument("--json")
    args = parser.parse_args()
    settings, components = service_components(args.config, args.model_config)
    result = compare(settings, components, tuple(int(w) for w in args.workers.split(",")), args.burst, args.rounds,
                     args.images)
    info = components.model_info
    result.update(machine=cpu_facts(), model={"config": args.model_config, "demo": info.demo, "backend": info.backend})
    print(table(result))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    _main()
