"""Stress: burn-triage run many times under CPU load with each scheduler; is anything lost?

``burnscope bench stress -i sample_data --runs 200 --load 2 --json out.json`` builds the model
once, then for each scheduler runs the whole graph ``runs`` times, into a fresh output folder,
with reports delivered to a local FHIR endpoint (loopback; ``--no-deliver`` to skip), while
``load`` CPU burners run (``stress-ng --cpu`` when installed). Every run is checked against the
input: the run's accounting (``lost == 0``, ``accepted = reported + errors + skipped``), the
report files on disk, the bundles the outbox took (``delivery.enqueued``) and the bundles the
endpoint received all equal the number of images; the run must end ``drained``.

From Python::

    from burnscope.benchmarks.stress import run_stress
    result = run_stress(settings, "sample_data", components, runs=10, schedulers=("event_based", "greedy"))

Outputs: per scheduler, runs, failed runs, images lost in total, run wall time (median, p95,
max) and each failed run's summary; the machine (``lscpu`` model and flags); the command.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from burnscope.applications.burn_triage.app import TriageComponents
from burnscope.applications.burn_triage.runner import run_triage
from burnscope.benchmarks.burn_triage import percentile
from burnscope.benchmarks.workload import cpu_load

SCHEDULERS = ("event_based", "greedy")


class _FhirCounter(BaseHTTPRequestHandler):
    """Takes FHIR transaction Bundles (POST), answers 200 and remembers their ids."""

    received: list[str] = []
    lock = threading.Lock()

    def log_message(self, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0) or 0))
        try:
            bundle = json.loads(body)
            ok = bundle.get("resourceType") == "Bundle" and bundle.get("type") == "transaction"
        except ValueError:
            ok = False
        if ok:
            with type(self).lock:
                type(self).received.append(str(bundle.get("id")))
        payload = b'{"resourceType": "Bundle", "type": "transaction-response", "entry": []}'
        self.send_response(200 if ok else 400)
        self.send_header("Content-Type", "application/fhir+json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


def machine() -> dict[str, Any]:
    """CPU model, count and flags (``lscpu``), Python and platform: where the figures come from."""
    info: dict[str, Any] = {"python": sys.version.split()[0], "platform": platform.platform(),
                            "cpus": os.cpu_count()}
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return info
    fields = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
    info["cpu_model"] = fields.get("Model name", "").strip()
    info["cpu_flags"] = fields.get("Flags", "").strip()
    return info


def _report_files(out: Path) -> int:
    """Image report JSON files in a run's output folder."""
    return sum(1 for p in out.rglob("*.json")
               if not p.name.endswith(".fhir.json") and p.name not in ("summary.json", "study.json"))


def check_run(summary: dict[str, Any], out: Path, expected_images: int, delivered: int | None) -> list[str]:
    """What is wrong with one run (empty: nothing)."""
    problems = []
    acc = summary.get("accounting") or {}
    if acc.get("lost"):
        problems.append(f"lost {acc['lost']}")
    if not acc.get("balanced", False):
        problems.append("accounting does not balance")
    if summary.get("images") != expected_images or acc.get("reported") != expected_images:
        problems.append(f"reported {acc.get('reported')} of {expected_images}")
    files = _report_files(out)
    if files != expected_images:
        problems.append(f"{files} report files for {expected_images} images")
    if delivered is not None:
        enqueued = (summary.get("delivery") or {}).get("enqueued")
        if enqueued != expected_images:
            problems.append(f"{enqueued} enqueued for delivery")
        if delivered != expected_images:
            problems.append(f"{delivered} delivered to the endpoint")
    if (summary.get("run") or {}).get("outcome") != "drained":
        problems.append(f"ended {summary.get('run', {}).get('outcome')}")
    return problems


def run_stress(
    settings: dict[str, Any],
    input_path: str | os.PathLike,
    components: TriageComponents,
    *,
    runs: int = 200,
    schedulers: Sequence[str] = SCHEDULERS,
    load: int = 2,
    deliver: bool = True,
    worker_threads: int | None = None,
    on_run: Callable[[str, int, list[str]], None] | None = None,
) -> dict[str, Any]:
    """See the module docstring. ``on_run(scheduler, index, problems)`` after each run."""
    if runs < 1:
        raise ValueError("runs must be at least 1")
    if not schedulers:
        raise ValueError("name at least one scheduler")
    bad = [s for s in schedulers if s not in SCHEDULERS]
    if bad:
        raise ValueError(f"unknown scheduler(s) {', '.join(bad)}; choose from {', '.join(SCHEDULERS)}")
    server = None
    if deliver:
        _FhirCounter.received = []
        server = ThreadingHTTPServer(("127.0.0.1", 0), _FhirCounter)
        threading.Thread(target=server.serve_forever, daemon=True).start()
    expected: int | None = None
    per_scheduler: dict[str, Any] = {}
    tmp = Path(tempfile.mkdtemp(prefix="burnscope-stress-"))
    try:
        with cpu_load(load) as load_source:
            for kind in schedulers:
                sched = dict(settings["scheduler"], kind=kind)
                if worker_threads is not None:
                    sched["worker_threads"] = worker_threads
                run_settings = dict(settings, scheduler=sched)
                if server is not None:
                    url = f"http://127.0.0.1:{server.server_port}/fhir"
                    run_settings["delivery"] = {
                        **settings["delivery"], "echo": False, "drain_timeout_s": 30,
                        "destinations": [{"name": "emr", "kind": "fhir", "url": url}],
                    }
                    formats = list(settings["report"]["formats"])
                    if "fhir" not in formats:
                        run_settings["report"] = dict(settings["report"], formats=[*formats, "fhir"])
                walls, failures, lost = [], [], 0
                for i in range(runs):
                    out = tmp / f"{kind}-{i}"
                    _FhirCounter.received = []
                    summary = run_triage(run_settings, input_path, out, components)
                    if expected is None:
                        expected = int(summary["images"])
                    delivered = len(set(_FhirCounter.received)) if server is not None else None
                    problems = check_run(summary, out, expected, delivered)
                    walls.append(float(summary["wall_s"]))
                    lost += int((summary.get("accounting") or {}).get("lost") or 0)
                    if problems:
                        failures.append({"run": i, "problems": problems,
                                         "accounting": summary.get("accounting"), "run_info": summary.get("run"),
                                         "delivery": summary.get("delivery")})
                    if on_run is not None:
                        on_run(kind, i, problems)
                    shutil.rmtree(out, ignore_errors=True)
                per_scheduler[kind] = {
                    "runs": runs,
                    "failed_runs": len(failures),
                    "images_lost": lost,
                    "images_per_run": expected,
                    "worker_threads": sched.get("worker_threads") if kind == "event_based" else 1,
                    "run_wall_s": {"median": round(statistics.median(walls), 3),
                                   "p95": round(percentile(walls, 95), 3), "max": round(max(walls), 3)},
                    "failures": failures,
                }
    finally:
        if server is not None:
            server.shutdown()
            server.server_close()
        shutil.rmtree(tmp, ignore_errors=True)
    model = components.model_info
    return {
        "benchmark": "stress",
        "input": str(input_path),
        "runs_per_scheduler": runs,
        "cpu_load": {"workers": load, "by": load_source},
        "nice": os.nice(0),
        "delivery": "local FHIR endpoint (loopback)" if deliver else None,
        "batch_size": settings["source"]["batch_size"],
        "report_formats": list(run_settings["report"]["formats"]),
        "model": {"name": model.name, "demo": model.demo, "backend": model.backend, "precision": model.precision},
        "machine": machine(),
        "schedulers": per_scheduler,
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


__all__ = ["SCHEDULERS", "check_run", "machine", "run_stress"]
