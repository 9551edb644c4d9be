"""Synthetic workloads for the reliability benchmarks: copies of the sample images with new UIDs,
and background CPU load.

``copies(files, n, dest)`` writes ``n`` DICOM files cycling through ``files``, each with a new SOP
Instance UID (and, every ``per_study`` files, a new Study and Series Instance UID), so every copy
is a distinct image with its own report. Patient data stay the synthetic ones of the samples.

``cpu_load(workers)`` keeps ``workers`` CPUs busy (``stress-ng --cpu`` when it is installed, else
busy Python processes) until the context exits.
"""

from __future__ import annotations

import contextlib
import copy
import multiprocessing
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from pydicom.uid import generate_uid

def sample_images(root: str | os.PathLike) -> list[Path]:
    """The sample files that decode (the truncated one and the non-DICOM notes are left out)."""
    return [p for p in sorted(Path(root).glob("study-*/*.dcm")) if "truncated" not in p.name]


def copies(files: Sequence[Path], n: int, dest: str | os.PathLike, *, per_study: int = 10,
           start: int = 0, prefix: str = "copy") -> list[Path]:
    """``n`` distinct DICOM files in ``dest`` (flat), numbered from ``start``; returns their paths.

    Written under a temporary name and renamed into place, so a watcher sees each whole.
    """
    import pydicom

    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    templates = [pydicom.dcmread(p) for p in files]
    out: list[Path] = []
    study = series = ""
    for i in range(start, start + n):
        if (i - start) % per_study == 0:
            study, series = generate_uid(), generate_uid()
        ds = copy.deepcopy(templates[i % len(templates)])
        uid = generate_uid()
        ds.SOPInstanceUID = uid
        ds.file_meta.MediaStorageSOPInstanceUID = uid
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
        path = dest / f"{prefix}-{i:06d}.dcm"
        partial = path.with_name(path.name + ".part")
        ds.save_as(partial, enforce_file_format=True)
        os.replace(partial, path)
        out.append(path)
    return out


def _burn(stop_at: float) -> None:  # pragma: no cover - runs in a child process
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    x = 0
    while time.monotonic() < stop_at:
        x = (x * 1103515245 + 12345) & 0xFFFFFFFF


@contextlib.contextmanager
def cpu_load(workers: int, *, max_s: float = 24 * 3600) -> Iterator[str]:
    """Keep ``workers`` CPUs busy while the block runs; yields what makes the load."""
    if workers <= 0:
        yield "none"
        return
    if shutil.which("stress-ng"):
        proc = subprocess.Popen(["stress-ng", "--cpu", str(workers), "--timeout", f"{int(max_s)}s", "--quiet"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            yield f"stress-ng --cpu {workers}"
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)
        return
    context = multiprocessing.get_context("spawn")
    procs = [context.Process(target=_burn, args=(time.monotonic() + max_s,), daemon=True) for _ in range(workers)]
    for p in procs:
        p.start()
    try:
        yield f"{workers} busy Python processes"
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.join(timeout=10)


__all__ = ["copies", "cpu_load", "sample_images"]
