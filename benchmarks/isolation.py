"""What crash-isolated decoding costs: images/s with and without the supervised worker pool.

    python -m burnscope.benchmarks.isolation [--copies 300] [--workers 1 2] [--repeat 3]
        [--photos 6] [--json FILE]

Input sets: the decodable ``sample_data`` files (10 frames), a folder of ``--copies`` copies of
them (hundreds of files, as a folder run sees them) and ``--photos`` phone-like photographs of
2016×1512 px stored uncompressed (18 MB of pixels each: the worst case for moving pixels
between processes). Modes, measured in the same run with the passes interleaved (so that a
shared machine's load hits every mode alike):

* ``in-process``: ``DicomLoader(isolate=False)`` (serial for 1 worker, threads above);
* ``isolated``: ``DicomLoader(isolate=True)``, the default (worker processes, pixels of 256 KB
  and more back through /dev/shm);
* ``isolated, pickled pixels``: the same pool with shared memory switched off (every pixel
  array pickled through the pipe), to show what shared memory saves.

One warm-up pass per mode (starts the pool, fills the page cache), then ``--repeat`` passes;
the median wall time is reported, and the CPU time of this process plus its decode workers per
image (``cpu_ms_per_image``: the cost that does not depend on how busy a shared machine is).
Pool start-up is measured separately (``startup_s``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from burnscope.operators.dicom_loader.core import DicomLoader

def _sets(tmp: Path, copies: int, photos: int, input_dir: Path | None = None) -> dict[str, list[Path]]:
    """The input's decodable files (default: the installed sample photographs wrapped as DICOM),
    ``copies`` copies of them, and ``photos`` 3 MP uncompressed photographs."""
    from burnscope.benchmarks.decode import default_sets, photo_sets

    if input_dir is None:
        (tmp / "wrapped").mkdir()
        sample = default_sets(tmp / "wrapped")["sample_photos"]
    else:
        sample = [f for f in DicomLoader(isolate=False).scan(input_dir)
                  if DicomLoader(isolate=False, workers=1).load_file_result(f).error is None]
    many = tmp / "copies"
    many.mkdir()
    copied = []
    for i in range(copies):
        src = sample[i % len(sample)]
        dst = many / f"{i:04d}-{src.name}"
        shutil.copy(src, dst)
        copied.append(dst)
    name = input_dir.name if input_dir is not None else "sample_photos"
    sets = {name: sample, f"{name} ×{copies} files": copied}
    if photos:
        raw = photo_sets(tmp, photos, (2016, 1512))["photos_uncompressed"]
        sets[f"3 MP uncompressed ×{photos}"] = raw
    return sets


def _loader(mode: str, workers: int) -> DicomLoader:
    loader = DicomLoader(workers=workers, isolate=mode != "in-process", max_pixels=1 << 31)
    if mode == "isolated, pickled pixels":
        loader._pool()._use_shm = False
    return loader


def _worker_cpu_s(loader: DicomLoader) -> float:
    """CPU seconds the loader's live decode workers have used (Linux /proc)."""
    pool = loader.decode_pool
    total = 0.0
    for worker in pool._pool if pool is not None else []:
        try:
            fields = Path(f"/proc/{worker.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, ValueError, IndexError):
            pass
    return total


def _pass(loader: DicomLoader, files: list[Path]) -> tuple[float, int, float]:
    """Wall seconds, images, and CPU seconds of this process plus its decode workers."""
    cpu0 = time.process_time() + _worker_cpu_s(loader)
    t0 = time.perf_counter()
    images = sum(len(r.images) for r in loader.iter_file_results(files))
    wall = time.perf_counter() - t0
    return wall, images, time.process_time() + _worker_cpu_s(loader) - cpu0


MODES = ("in-process", "isolated", "isolated, pickled pixels")


def run(copies: int, workers_list: list[int], repeat: int, photos: int, input_dir: Path | None = None) -> list[dict[str, Any]]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp_name:
        sets = _sets(Path(tmp_name), copies, photos, input_dir)
        for set_name, files in sets.items():
            for workers in workers_list:
                loaders, startup = {}, {}
                for mode in MODES:
                    t0 = time.perf_counter()
                    loaders[mode] = _loader(mode, workers)
                    if loaders[mode].isolate:
                        loaders[mode].load_file_result(files[0])  # starts one worker: start-up cost
                    startup[mode] = time.perf_counter() - t0
                    _pass(loaders[mode], files)  # warm-up
                walls: dict[str, list[float]] = {m: [] for m in MODES}
                cpus: dict[str, list[float]] = {m: [] for m in MODES}
                images = 0
                for _ in range(repeat):
                    for mode in MODES:
                        wall, images, cpu = _pass(loaders[mode], files)
                        walls[mode].append(wall)
                        cpus[mode].append(cpu)
                for mode in MODES:
                    loaders[mode].close()
                    median = statistics.median(walls[mode])
                    rows.append({
                        "set": set_name, "files": len(files), "images": images, "workers": workers, "mode": mode,
                        "images_per_s": round(images / median, 1), "median_s": round(median, 4),
                        "startup_s": round(startup[mode], 3),
                        "cpu_ms_per_image": round(1000 * statistics.median(cpus[mode]) / images, 3),
                    })
                base = next(r for r in rows if r["set"] == set_name and r["workers"] == workers
                            and r["mode"] == "in-process")
                for r in rows[-len(MODES):]:
                    r["vs_in_process"] = round(r["images_per_s"] / base["images_per_s"], 3)
                for r in rows[-len(MODES):]:
                    print(f"{set_name:>28}  workers={workers}  {r['mode']:>26}: {r['images_per_s']:>8.1f} images/s "
                          f"({r['vs_in_process']:.2f}× in-process), {r['cpu_ms_per_image']:.2f} CPU ms/image",
                          flush=True)
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-i", "--input", type=Path, default=None,
                        help="DICOM folder (default: the installed sample photographs, wrapped as DICOM)")
    parser.add_argument("--copies", type=int, default=300)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--photos", type=int, default=6)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    rows = run(args.copies, args.workers, args.repeat, args.photos, args.input)
    out = {"python": platform.python_version(), "cpus": os.cpu_count(), "load_average": os.getloadavg(),
           "rows": rows}
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
