"""burn-triage benchmark: the whole graph headless, and the same stages called without Holoscan.

``burnscope bench burn-triage -i INPUT`` runs it and prints the table; from Python::

    from burnscope.applications.burn_triage.app import build_components
    from burnscope.applications.burn_triage.settings import load_settings
    from burnscope.benchmarks.burn_triage import run_benchmark

    settings = load_settings()
    result = run_benchmark(settings, "sample_data", build_components(settings), repeat=3)

Inputs: ``input_path`` (a DICOM folder or file: there is no default, the figures are about the
images you give it), ``settings`` (the app's merged YAML; ``source.batch_size``,
``source.period_ms``, ``report.formats`` and ``scheduler.kind`` shape the run) and
``components`` (model, engine, head: built once by the app). Outputs: a dict of latency
percentiles per message (loader emit → report sink, from Holoscan's data-flow tracker),
images/s, median run wall time, peak RSS, and, with ``direct``, the same for plain calls of the
cores plus the Holoscan overhead in percent.
"""

from __future__ import annotations

import os
import re
import resource
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from burnscope.applications.burn_triage.app import TriageComponents
from burnscope.applications.burn_triage.runner import REPORT_SINK_OP, SOURCE_OP, run_triage
from burnscope.common.messages import DEMO_BANNER

_HOP = re.compile(r"\(([\w.]+),(\d+),(\d+)\)")


def latencies_from_flow_log(path: str | os.PathLike, root: str = SOURCE_OP, leaf: str = REPORT_SINK_OP) -> list[float]:
    """End-to-end latencies (ms) of the messages that went from ``root`` to ``leaf``, in the
    order the leaf received them.

    Each log entry is a path ``(op, receive_us, publish_us) -> ...``; the latency is the leaf's
    last timestamp minus the root's publish time, as Holoscan's own E2E metric counts it.
    """
    arrivals = []
    for line in Path(path).read_text().splitlines():
        hops = _HOP.findall(line)
        # operator names are qualified by the fragment (``burn_triage.medical_images``)
        if len(hops) >= 2 and hops[0][0].rsplit(".", 1)[-1] == root and hops[-1][0].rsplit(".", 1)[-1] == leaf:
            arrivals.append((int(hops[-1][1]), (int(hops[-1][2]) - int(hops[0][2])) / 1000.0))
    return [latency for _, latency in sorted(arrivals)]


def percentile(values: list[float], q: float) -> float:
    """Linear-interpolated percentile (q in 0–100), as numpy's default."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = (len(ordered) - 1) * q / 100.0
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def bench_triage(
    settings: dict[str, Any],
    input_path: str | os.PathLike,
    components: TriageComponents,
    repeat: int = 3,
    on_repeat: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Run the graph headless ``repeat`` times (after one warm-up run) and measure it.

    Latency is per message (one batch of ``source.batch_size`` images) from the loader's emit to
    the report sink; images/s is images over the wall time of the measured runs.
    """
    if repeat < 1:
        raise ValueError("repeat must be at least 1")
    run_triage(settings, input_path, None, components)  # warm-up: caches, thread pools, allocator
    latencies: list[float] = []
    images = 0
    wall = 0.0
    walls = []
    summary: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="burnscope-bench-") as tmp:
        for i in range(repeat):
            flow_log = Path(tmp) / f"flow-{i}.log"
            summary, app = run_triage(settings, input_path, None, components, flow_log=flow_log, return_app=True)
            # Ticks that carried only error records pass through with empty batches: leave them
            # out (the sink saw the messages in the order the log lists their arrivals).
            sizes = app.ops[REPORT_SINK_OP].sizes
            per_message = latencies_from_flow_log(flow_log)
            if len(per_message) != len(sizes):
                raise RuntimeError(f"flow log lists {len(per_message)} messages, the sink received {len(sizes)}")
            latencies += [lat for lat, n in zip(per_message, sizes) if n > 0]
            images += summary["images"]
            wall += summary["wall_s"]
            walls.append(summary["wall_s"])
            if on_repeat:
                on_repeat(i + 1)
    result = {
        "app": "burn-triage",
        "input": str(input_path),
        "repeat": repeat,
        "batch_size": settings["source"]["batch_size"],
        "scheduler": settings["scheduler"]["kind"],
        "period_ms": settings["source"].get("period_ms") or 0,
        "report_formats": list(settings["report"]["formats"]),
        "images_per_run": summary.get("images", 0),
        "errors_per_run": summary.get("errors", 0),
        "messages": len(latencies),
        "latency_ms": {
            "p50": round(percentile(latencies, 50), 3),
            "p95": round(percentile(latencies, 95), 3),
            "p99": round(percentile(latencies, 99), 3),
            "mean": round(statistics.fmean(latencies), 3) if latencies else float("nan"),
            "max": round(max(latencies), 3) if latencies else float("nan"),
        },
        "images_per_s": round(images / wall, 2) if wall > 0 else float("nan"),
        "run_wall_s_median": round(statistics.median(walls), 3),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "model": summary.get("model", {}),
    }
    if result["model"].get("demo"):
        result["warning"] = DEMO_BANNER
    return result


def run_direct(settings: dict[str, Any], input_path: str | os.PathLike, components: TriageComponents) -> dict[str, Any]:
    """The same stages as the graph, called one after another in plain Python (no Holoscan).

    The benchmark's baseline for Holoscan's own overhead: same cores, same batches, reports
    rendered and dropped. Returns per-batch latencies (ms, batches with images only) and counts.
    """
    from burnscope.operators.decision_support.core import DecisionSupport
    from burnscope.operators.dicom_loader.core import DicomLoader
    from burnscope.operators.burn_severity.core import BurnSeverity
    from burnscope.operators.inference.core import ImageEncoder
    from burnscope.common.messages import ImageBatch
    from burnscope.operators.report.core import ReportEmitter

    from burnscope.applications.burn_triage.decode_paths import loader_options

    src = settings["source"]
    loader = DicomLoader(**loader_options(src, components.preprocessor.image_size))
    encoder = ImageEncoder(components.engine)
    severity = BurnSeverity(components.head)
    support = DecisionSupport(settings["decision_support"].get("default_case") or {})
    emitter = ReportEmitter(settings["report"]["formats"])
    keep_thumbnails = settings["preprocess"]["keep_thumbnails"]
    latencies, images, reports = [], 0, 0
    started = time.perf_counter()
    batches = loader.iter_batches(input_path, src["batch_size"])
    while True:
        t0 = time.perf_counter()
        batch = next(batches, None)  # decoding counts, as it does in the graph's source
        if batch is None:
            break
        records, _errors = batch
        pre = components.preprocessor.process([r.pixels for r in records], thumbnails=keep_thumbnails)
        embedded = encoder.run(ImageBatch([r.context for r in records], pre.tensor, pre.thumbnails))
        bundles = emitter.emit(support(severity(embedded)))
        if records:
            latencies.append((time.perf_counter() - t0) * 1000.0)
        images += len(records)
        reports += len(bundles)
    loader.close()
    return {"latencies_ms": latencies, "images": images, "reports": reports, "wall_s": time.perf_counter() - started}


def bench_direct(
    settings: dict[str, Any], input_path: str | os.PathLike, components: TriageComponents, repeat: int = 3
) -> dict[str, Any]:
    """:func:`run_direct` measured like :func:`bench_triage` (one warm-up run, then ``repeat``)."""
    run_direct(settings, input_path, components)
    runs = [run_direct(settings, input_path, components) for _ in range(repeat)]
    latencies = [lat for run in runs for lat in run["latencies_ms"]]
    wall = sum(run["wall_s"] for run in runs)
    return {
        "latency_ms": {q: round(percentile(latencies, v), 3) for q, v in (("p50", 50), ("p95", 95), ("p99", 99))},
        "images_per_s": round(sum(run["images"] for run in runs) / wall, 2) if wall > 0 else float("nan"),
        "run_wall_s_median": round(statistics.median(run["wall_s"] for run in runs), 3),
    }


def run_benchmark(
    settings: dict[str, Any],
    input_path: str | os.PathLike,
    components: TriageComponents,
    repeat: int = 3,
    direct: bool = True,
) -> dict[str, Any]:
    """:func:`bench_triage`, plus :func:`bench_direct` and the Holoscan overhead when ``direct``
    (leave it off for a paced source: a paced graph waits on purpose, there is no overhead to
    compare), plus the GPU facts of the machine. What ``burnscope bench burn-triage`` prints and
    writes."""
    from burnscope.applications.environment import gpu_status

    result = bench_triage(settings, input_path, components, repeat=repeat)
    if direct:
        result["direct"] = bench_direct(settings, input_path, components, repeat=repeat)
        graph_s, direct_s = result["run_wall_s_median"], result["direct"]["run_wall_s_median"]
        result["holoscan_overhead_pct"] = round(100.0 * (graph_s - direct_s) / direct_s, 1) if direct_s else None
    result["gpu"] = gpu_status()
    return result
