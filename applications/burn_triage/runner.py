"""Run the burn-triage graph once and summarise it.

Used by ``burnscope run burn-triage``, by the headless benchmark
(:mod:`burnscope.benchmarks.burn_triage`, ``burnscope bench burn-triage``) and by the tests.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any, Callable

from burnscope.common.messages import DEMO_BANNER

from .app import BurnTriageApp, TriageComponents, configure_scheduler

log = logging.getLogger(__name__)

SOURCE_OP = "medical_images"
REPORT_SINK_OP = "emr_integration"


def run_triage(
    settings: dict[str, Any],
    input_path: str | os.PathLike,
    output_dir: str | os.PathLike | None,
    components: TriageComponents,
    on_progress: Callable[..., None] | None = None,
    flow_log: str | os.PathLike | None = None,
    return_app: bool = False,
) -> dict[str, Any] | tuple[dict[str, Any], BurnTriageApp]:
    """Compose and run the graph once; return a summary (counts, findings per class, errors).

    ``flow_log``: when given, Holoscan's data-flow tracker logs every message's path with
    timestamps there (see :func:`burnscope.benchmarks.burn_triage.latencies_from_flow_log`). ``return_app``: also return the
    app, whose operators hold their counters.
    """
    from burnscope.engines.base import INSTRUMENT_REFUSAL, is_instrument

    if output_dir is not None and is_instrument(components.model_info):
        raise ValueError(INSTRUMENT_REFUSAL)  # the benchmark's tower stand-in writes no reports
    app = BurnTriageApp(settings, input_path, output_dir, components, on_progress=on_progress)
    configure_scheduler(app, settings)
    started = time.perf_counter()
    if flow_log is not None:
        from holoscan.core import Tracker

        with Tracker(app, filename=str(flow_log), num_start_messages_to_skip=0, num_last_messages_to_discard=0):
            app.run()
    else:
        app.run()
    wall_s = time.perf_counter() - started
    summary = summarise(app, wall_s)
    return (summary, app) if return_app else summary


def summarise(app: BurnTriageApp, wall_s: float) -> dict[str, Any]:
    source = app.ops[SOURCE_OP]
    reports = app.ops[REPORT_SINK_OP]
    findings, errors = app.tallies["findings"], app.tallies["errors"]
    info = app.components.model_info
    summary = {
        "files": getattr(source, "files_total", source.files_done),
        "skipped_by_selection": getattr(source, "files_skipped", 0),
        "images": source.images_emitted,
        # reports the sink wrote (folder) or received (headless)
        "reports": reports.written if hasattr(reports, "written") else reports.count,
        "errors": source.errors_emitted,
        "findings": dict(sorted(findings.labels.items())),
        "error_reasons": dict(sorted(errors.labels.items())),
        "wall_s": round(wall_s, 3),
        "model": {
            "name": info.name,
            "weights": info.weights,
            "demo": info.demo,
            "backend": info.backend,
            "precision": info.precision,
            "device": info.device,
        },
        "output_dir": str(app.output_dir) if app.output_dir else None,
    }
    network = app.ops.get("pacs_emr_delivery")
    if network is not None:
        summary["delivery"] = {
            "enqueued": network.enqueued, "delivered": network.delivered,
            "failed": network.failed, "pending": network.pending,
        }
    if info.demo:
        summary["warning"] = DEMO_BANNER
    return summary


def write_json(data: dict[str, Any], path: str | os.PathLike) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n")
