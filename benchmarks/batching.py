"""The dynamic batcher's curve: throughput and p99 latency for ``batching.max_delay_ms`` in
{0, 2, 5, 10, 20} and two ``max_batch`` values, as a table, JSON and a PNG plot.

``python -m burnscope.benchmarks.batching --json OUT.json --png OUT.png`` (results in
``docs/benchmarks/service-cpu.md``). For each setting the service (``burnscope serve``'s graph,
:mod:`burnscope.benchmarks.service_load`) gets two runs: a burst of ``--burst`` images sent at
once (throughput: images/s until the last report) and an open-loop Poisson load at ``--rate``
images/s (p50/p99 latency, C-STORE done → report written).
"""

from __future__ import annotations

import argparse
import copy
import json
from pathlib import Path
from typing import Any

from burnscope.benchmarks.environment import cpu_facts
from burnscope.benchmarks.service_load import capacity, run_load, service_components

DELAYS_MS = (0, 2, 5, 10, 20)


def curve(settings: dict[str, Any], components: Any, max_batches: tuple[int, ...] = (4, 16),
          delays_ms: tuple[float, ...] = DELAYS_MS, burst: int = 40, rate: float = 2.0, duration_s: float = 20.0,
          images: str | Path | None = None) -> list[dict[str, Any]]:
    rows = []
    for max_batch in max_batches:
        for delay in delays_ms:
            s = copy.deepcopy(settings)
            s["batching"].update(max_batch=max_batch, max_delay_ms=delay)
            cap = capacity(s, components, n=burst, images=images)
            load = run_load(s, components, rate=rate, stat_fraction=0.0, duration_s=duration_s, images=images)
            rows.append({"max_batch": max_batch, "max_delay_ms": delay, "images_per_s": cap["images_per_s"],
                         "p50_ms": load["latency_ms"]["routine"]["p50"],
                         "p99_ms": load["latency_ms"]["routine"]["p99"], "load_mean_batch": load["mean_batch_size"],
                         "offered_rate": rate, "stage_ms": cap["stage_ms"]})
            print(f"max_batch {max_batch:>3} delay {delay:>4} ms: {cap['images_per_s']:6.2f} img/s burst, "
                  f"p99 {rows[-1]['p99_ms']:8.1f} ms at {rate} img/s", flush=True)
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    lines = ["| max_batch | max_delay_ms | burst images/s | p50 ms | p99 ms | mean batch (load) |", "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['max_batch']} | {r['max_delay_ms']} | {r['images_per_s']} | {r['p50_ms']} | {r['p99_ms']} | "
                     f"{r['load_mean_batch'].get('routine', '')} |")
    return "\n".join(lines)


def plot(rows: list[dict[str, Any]], path: str | Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for max_batch in sorted({r["max_batch"] for r in rows}):
        mine = [r for r in rows if r["max_batch"] == max_batch]
        xs = [r["max_delay_ms"] for r in mine]
        left.plot(xs, [r["images_per_s"] for r in mine], marker="o", label=f"max_batch {max_batch}")
        right.plot(xs, [r["p99_ms"] for r in mine], marker="o", label=f"max_batch {max_batch}")
    left.set(xlabel="max_delay_ms", ylabel="images/s (burst)", title="throughput")
    right.set(xlabel="max_delay_ms", ylabel="p99 latency, ms", title=f"p99 at {rows[0]['offered_rate']} img/s offered")
    for ax in (left, right):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def _main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-c", "--config")
    parser.add_argument("--model-config", default="biomedclip-tiny")
    parser.add_argument("--max-batch", default="4,16")
    parser.add_argument("--burst", type=int, default=40)
    parser.add_argument("--rate", type=float, default=2.0)
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--images")
    parser.add_argument("--json")
    parser.add_argument("--png")
    args = parser.parse_args()
    max_batches = tuple(int(v) for v in args.max_batch.split(","))
    settings, components = service_components(args.config, args.model_config, max(max_batches))
    rows = curve(settings, components, max_batches, burst=args.burst, rate=args.rate, duration_s=args.duration,
                 images=args.images)
    print(table(rows))
    info = components.model_info
    result = {"machine": cpu_facts(), "model": {"config": args.model_config, "demo": info.demo, "backend": info.backend},
              "formats": settings["report"]["formats"], "rows": rows}
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    if args.png:
        plot(rows, args.png, f"burn-triage service, {args.model_config} ({info.backend}, {info.device}), "
                             f"formats {','.join(settings['report']['formats'])}")


if __name__ == "__main__":
    _main()
