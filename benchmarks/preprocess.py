"""Preprocessing throughput: NumPy vs CuPy vs open_clip's own (PIL) transform.

Measures images/s of BiomedCLIP's transform (shortest side 224, centre crop, normalise) at
several batch sizes, on photographs (``--images DIR``; default: the small sample photographs
shipped with :mod:`burnscope.operators.preprocess.calibration`, 256–385 px) and on random-size synthetic
images (160–1200 px per side), and checks that the CuPy result equals the NumPy one. Usage::

    python -m burnscope.benchmarks.preprocess --batch 1,64,256 [--images DIR] --json out.json

or from Python: ``rows = run_benchmark(batch_sizes=(1, 64))``. Backends:

* ``numpy``        – :class:`~burnscope.operators.preprocess.core.Preprocessor` on the CPU;
* ``cupy``         – the same on the GPU, host (NumPy) images in, the batch left on the GPU;
* ``cupy-device``  – GPU with the images already on the GPU (e.g. decoded there), no upload;
* ``open_clip``    – ``open_clip.transform.image_transform`` on PIL images + ``torch.stack``.

Timing: one warm-up call, then ``repeats`` timed calls; GPU calls end with a stream
synchronisation; the median is reported.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from burnscope.common.gpu import cupy_usable
from burnscope.operators.preprocess.core import BIOMEDCLIP_MEAN, BIOMEDCLIP_STD, Preprocessor

BACKENDS = ("numpy", "cupy", "cupy-device", "open_clip")
SOURCES = ("photos", "synthetic")


def photo_images(folders: Sequence[str | os.PathLike] | None = None) -> list[np.ndarray]:
    """RGB photographs of ``folders`` (JPEG/PNG/DICOM; default: the shipped sample photographs)."""
    from burnscope.operators.preprocess.calibration import iter_rgb, sample_photo_dirs

    folders = list(folders or sample_photo_dirs())
    photos = [rgb for _, rgb in iter_rgb(folders)]
    if not photos:
        raise RuntimeError(f"no photograph could be read from {', '.join(map(str, folders))}")
    return photos


def synthetic_images(count: int, seed: int = 0, low: int = 160, high: int = 1200) -> list[np.ndarray]:
    """Random-noise RGB images of random sizes (each side in [low, high))."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(low, high, size=(count, 2))
    return [rng.integers(0, 256, size=(int(h), int(w), 3), dtype=np.uint8) for h, w in sizes]


def _batch(images: Sequence[np.ndarray], n: int) -> list[np.ndarray]:
    return [images[i % len(images)] for i in range(n)]


def _time(fn: Callable[[], Any], repeats: int, sync: Callable[[], None] | None = None) -> list[float]:
    fn()  # warm-up: kernel compilation, weight tables, memory pools
    if sync:
        sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        if sync:
            sync()
        times.append(time.perf_counter() - start)
    return times


def _open_clip_transform(image_size: int):
    from open_clip.transform import image_transform

    return image_transform(
        image_size,
        is_train=False,
        mean=BIOMEDCLIP_MEAN,
        std=BIOMEDCLIP_STD,
        resize_mode="shortest",
        interpolation="bicubic",
    )


def available_backends() -> list[str]:
    found = ["numpy"]
    if cupy_usable():
        found += ["cupy", "cupy-device"]
    try:
        import open_clip  # noqa: F401
        import torch  # noqa: F401

        found.append("open_clip")
    except ImportError:
        pass
    return found


def run_benchmark(
    batch_sizes: Sequence[int] = (1, 64, 256),
    backends: Sequence[str] | None = None,
    sources: Sequence[str] = SOURCES,
    repeats: int = 5,
    dtype: str = "float32",
    image_size: int = 224,
    check: bool = True,
    progress: Callable[[str], None] | None = None,
    torch_threads: int | None = 1,
    cpu_threads: int = 1,
    photo_dirs: Sequence[str | os.PathLike] | None = None,
) -> list[dict[str, Any]]:
    """Measure every backend × source × batch size; return one dict per measurement.

    Row keys: backend, source, batch, dtype, device, median_ms, images_per_s, min_ms, repeats,
    mean_pixels (average input pixels per image) and, for CuPy rows when ``check``,
    max_abs_diff_vs_numpy (0.0 means bit-identical). ``torch_threads`` (default 1, like the
    single-threaded NumPy path; None leaves torch's setting) applies to the open_clip rows,
    ``cpu_threads`` to the NumPy rows (``Preprocessor(cpu_threads=...)``). ``photo_dirs``: the
    folders of the ``photos`` source (default: the shipped sample photographs).
    """
    usable = available_backends()
    wanted = list(backends) if backends else usable
    unknown = set(wanted) - set(BACKENDS)
    if unknown:
        raise ValueError(f"unknown backends {sorted(unknown)}; choose from {BACKENDS}")
    skipped = [b for b in wanted if b not in usable]
    wanted = [b for b in wanted if b in usable]
    rows: list[dict[str, Any]] = []
    cpu = Preprocessor(image_size=image_size, dtype=dtype, device="cpu", cpu_threads=cpu_threads)
    wants_gpu = bool({"cupy", "cupy-device"} & set(wanted))
    gpu = Preprocessor(image_size=image_size, dtype=dtype, device="gpu") if wants_gpu else None
    sync = None
    if gpu is not None:
        import cupy

        def sync() -> None:
            cupy.cuda.get_current_stream().synchronize()

    pools = {"photos": lambda: photo_images(photo_dirs), "synthetic": lambda: synthetic_images(64)}
    for source in sources:
        pool = pools[source]()
        for n in batch_sizes:
            images = _batch(pool, n)
            mean_pixels = float(np.mean([im.shape[0] * im.shape[1] for im in images]))
            reference = cpu(images) if check and gpu is not None else None
            for backend in wanted:
                if progress:
                    progress(f"{backend} {source} batch {n}")
                extra: dict[str, Any] = {}
                if backend == "numpy":
                    times = _time(lambda: cpu(images), repeats)
                    device = "cpu"
                    extra["threads"] = cpu_threads
                elif backend in ("cupy", "cupy-device"):
                    import cupy

                    inputs = [cupy.asarray(im) for im in images] if backend == "cupy-device" else images
                    times = _time(lambda: gpu(inputs), repeats, sync)
                    device = "cuda"
                    if reference is not None:
                        result = cupy.asnumpy(gpu(inputs)).astype(np.float32)
                        diff = np.abs(result - reference.astype(np.float32))
                        extra["max_abs_diff_vs_numpy"] = float(diff.max()) if diff.size else 0.0
                else:  # open_clip
                    import torch
                    from PIL import Image

                    transform = _open_clip_transform(image_size)
                    torch_dtype = getattr(torch, dtype)
                    if torch_threads:
                        torch.set_num_threads(torch_threads)

                    def run_open_clip() -> Any:
                        return torch.stack([transform(Image.fromarray(im)) for im in images]).to(torch_dtype)

                    times = _time(run_open_clip, repeats)
                    device = "cpu"
                median = statistics.median(times)
                rows.append(
                    {
                        "backend": backend,
                        "source": source,
                        "batch": n,
                        "dtype": dtype,
                        "device": device,
                        "median_ms": round(median * 1e3, 3),
                        "min_ms": round(min(times) * 1e3, 3),
                        "images_per_s": round(n / median, 1),
                        "repeats": repeats,
                        "mean_pixels": round(mean_pixels),
                        **extra,
                    }
                )
    for backend in skipped:
        rows.append({"backend": backend, "skipped": "not usable on this machine"})
    return rows


def environment() -> dict[str, Any]:
    """Machine and library versions, for the JSON file."""
    info: dict[str, Any] = {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
    }
    info["numpy"] = np.__version__
    for name in ("scipy", "PIL", "torch", "open_clip", "cupy"):
        try:
            module = __import__(name)
            info[name] = getattr(module, "__version__", "?")
        except ImportError:
            continue
    if cupy_usable():
        import cupy

        props = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.Device().id)
        info["gpu"] = props["name"].decode() if isinstance(props["name"], bytes) else str(props["name"])
    return info


def print_table(rows: Sequence[dict[str, Any]]) -> None:
    """Rich table: one row per backend × source × batch."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title="BiomedCLIP preprocessing throughput")
    for column in ("backend", "source", "batch", "dtype", "median ms", "images/s", "max |Δ| vs NumPy"):
        table.add_column(column, justify="left" if column in ("backend", "source", "dtype") else "right")
    for row in rows:
        if "skipped" in row:
            table.add_row(row["backend"], "—", "—", "—", "—", row["skipped"], "")
            continue
        diff = row.get("max_abs_diff_vs_numpy")
        table.add_row(
            row["backend"],
            row["source"],
            str(row["batch"]),
            row["dtype"],
            f"{row['median_ms']:.2f}",
            f"{row['images_per_s']:,.0f}",
            "" if diff is None else f"{diff:g}",
        )
    Console().print(table)


def main(argv: Sequence[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", default="1,64,256", help="comma-separated batch sizes")
    parser.add_argument(
        "--backends", default="", help=f"comma-separated subset of {','.join(BACKENDS)} (default: all usable)"
    )
    parser.add_argument("--sources", default=",".join(SOURCES), help="photos,synthetic")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--dtype", default="float32", choices=("float32", "float16"))
    parser.add_argument("--no-check", action="store_true", help="skip the CuPy-vs-NumPy comparison")
    parser.add_argument(
        "--torch-threads", type=int, default=1, help="torch threads for open_clip (0: leave as is)"
    )
    parser.add_argument("--cpu-threads", type=int, default=1, help="threads of the NumPy path")
    parser.add_argument("--images", type=Path, action="append", default=None,
                        help="photo folder for the 'photos' source (repeatable; default: the shipped samples)")
    parser.add_argument("--json", default="", help="write rows and environment to this JSON file")
    args = parser.parse_args(argv)
    rows = run_benchmark(
        batch_sizes=[int(b) for b in args.batch.split(",") if b],
        backends=[b for b in args.backends.split(",") if b] or None,
        sources=[s for s in args.sources.split(",") if s],
        repeats=args.repeats,
        dtype=args.dtype,
        check=not args.no_check,
        torch_threads=args.torch_threads or None,
        cpu_threads=args.cpu_threads,
        photo_dirs=args.images,
    )
    print_table(rows)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump({"environment": environment(), "rows": rows}, handle, indent=2)
    return rows


if __name__ == "__main__":
    main()
