"""Soak: thousands of images through ``burnscope run burn-triage --watch``; does memory or the
number of open files grow?

``burnscope bench soak --images 10000 -c APP.yaml --json out.json`` starts the watch service as
its own process (exactly as a site runs it), feeds it copies of the sample images with new UIDs
(never more than ``backlog`` waiting), and samples the service's resident memory
(``/proc/PID/status`` VmRSS) and open file descriptors (``/proc/PID/fd``) every ``sample_s``
seconds, with the number of files done (from its intake journal). The service stops itself after
``images`` files (``--max-files``).

Growth is the median of the samples taken while the last thousand files were processed over the
median while the first thousand were (with fewer than 2,000 files: the last and first tenth).
From Python: :func:`run_soak`.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from burnscope.benchmarks.stress import machine
from burnscope.benchmarks.workload import copies, sample_images

CHECKOUT_SAMPLES = Path(__file__).resolve().parents[1] / "sample_data"


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    return float("nan")


def _fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def _done(journal: Path) -> int:
    if not journal.exists():
        return 0
    try:
        db = sqlite3.connect(f"file:{journal}?mode=ro", uri=True, timeout=5)
        try:
            return int(db.execute("SELECT COUNT(*) FROM files WHERE state='done'").fetchone()[0])
        finally:
            db.close()
    except sqlite3.Error:
        return -1


def growth(samples: list[dict[str, Any]], key: str, total: int) -> dict[str, float]:
    """Median of ``key`` over the samples of the last window vs the first window (see module doc)."""
    window = 1000 if total >= 2000 else max(1, total // 10)
    first = [s[key] for s in samples if 0 < s["done"] <= window]
    last = [s[key] for s in samples if s["done"] > total - window]
    if not first or not last:
        return {"first": float("nan"), "last": float("nan"), "pct": float("nan"), "window": window}
    a, b = statistics.median(first), statistics.median(last)
    return {"first": round(a, 2), "last": round(b, 2), "pct": round(100.0 * (b - a) / a, 2), "window": window}


def run_soak(
    *,
    images: int = 10_000,
    source: str | os.PathLike | None = None,
    workdir: str | os.PathLike | None = None,
    sample_s: float = 5.0,
    backlog: int = 200,
    config: str | os.PathLike | None = None,
    on_sample: Callable[[dict[str, Any]], None] | None = None,
    timeout_s: float = 48 * 3600,
) -> dict[str, Any]:
    """See the module docstring; returns samples, growth, the run's accounting and exit code."""
    src = Path(source) if source else CHECKOUT_SAMPLES
    if not src.exists():  # e.g. installed from a wheel: no checkout's sample_data beside the package
        raise FileNotFoundError(f"{src} does not exist: give -i/--input a folder of DICOM images")
    files = sample_images(src) if src.is_dir() else [src]
    if not files:
        raise FileNotFoundError(f"no DICOM images to copy in {src}")
    own = workdir is None
    work = Path(tempfile.mkdtemp(prefix="burnscope-soak-")) if own else Path(workdir)
    watched, out = work / "watched", work / "out"
    watched.mkdir(parents=True, exist_ok=True)
    log = work / "service.log"
    cmd = [sys.executable, "-m", "burnscope.applications.cli", "run", "burn-triage", "--watch", "-i", str(watched),
           "-o", str(out), "--max-files", str(images), "-q"]
    if config is not None:
        cmd += ["-c", str(config)]
    samples: list[dict[str, Any]] = []
    fed = {"n": 0}
    stop = threading.Event()
    journal = out / "journal.sqlite"
    with open(log, "wb") as handle:
        proc = subprocess.Popen(cmd, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True)
    started = time.monotonic()

    def feed() -> None:
        while fed["n"] < images and not stop.is_set():
            waiting = fed["n"] - max(0, _done(journal))
            if waiting >= backlog:
                time.sleep(0.5)
                continue
            n = min(50, images - fed["n"], backlog - waiting)
            copies(files, n, watched, start=fed["n"], prefix="soak")
            fed["n"] += n

    feeder = threading.Thread(target=feed, daemon=True)
    try:
        while not journal.exists() and proc.poll() is None:  # the service is up once its journal is
            time.sleep(0.5)
        feeder.start()
        while proc.poll() is None:
            if time.monotonic() - started > timeout_s:
                raise RuntimeError(f"the soak did not finish within {timeout_s} s")
            try:
                sample = {"t": round(time.monotonic() - started, 1), "done": _done(journal), "fed": fed["n"],
                          "rss_mb": round(_rss_mb(proc.pid), 1), "fds": _fds(proc.pid)}
            except (FileNotFoundError, ProcessLookupError):
                break
            if sample["rss_mb"] != sample["rss_mb"] or sample["fds"] == 0:  # exited (a zombie has neither)
                break
            samples.append(sample)
            if on_sample is not None:
                on_sample(sample)
            time.sleep(sample_s)
        code = proc.wait()
    finally:
        stop.set()
        if proc.poll() is None:
            os.killpg(proc.pid, 15)
            proc.wait(timeout=120)
    wall = time.monotonic() - started
    import json

    summary_path = out / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    acc = summary.get("accounting") or {}
    result = {
        "benchmark": "soak",
        "images": images,
        "images_decoded": acc.get("accepted"),
        "reported": acc.get("reported"),
        "errors": acc.get("errors"),
        "lost": acc.get("lost", "no summary"),
        "exit_code": code,
        "wall_s": round(wall, 1),
        "images_per_s": round(images / wall, 3) if wall > 0 else float("nan"),
        "sample_s": sample_s,
        "backlog": backlog,
        "command": " ".join(cmd),
        "config": str(config) if config else None,
        "growth": {key: growth(samples, key, images) for key in ("rss_mb", "fds")},
        "peak": {"rss_mb": max((s["rss_mb"] for s in samples), default=float("nan")),
                 "fds": max((s["fds"] for s in samples), default=0)},
        "machine": machine(),
        "samples": samples,
        "log_tail": log.read_text(errors="replace")[-2000:] if code not in (0,) else "",
    }
    if own:
        shutil.rmtree(work, ignore_errors=True)
    return result


__all__ = ["growth", "run_soak"]
