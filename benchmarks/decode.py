"""Decode benchmark: images/s of the DICOM loader, serial vs a thread pool.

    python -m burnscope.benchmarks.decode [--workers 1 2 4] [--repeat 5] [--json FILE]
        [--copies 8] [PATH ...]

Default inputs, all present in an installed wheel: the sample photographs shipped with
:mod:`burnscope.operators.preprocess.calibration` wrapped as VL Photographic DICOM (JPEG baseline, 256–385 px),
pydicom's bundled test files (those that decode), and phone-like photographs generated on the
fly (``--photos N`` of ``--photo-size``, wrapped both as JPEG baseline and uncompressed). Each
``PATH`` given (a DICOM folder or file, e.g. a checkout's ``sample_data``) adds a set of that
name. Each input set is loaded ``repeat`` times per worker count (after one warm-up pass that
also fills the OS page cache); the best and median wall time are reported. ``--copies``
repeats the file list (of every set but the generated photographs) so that a pool has enough
work to spread.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import pydicom

from burnscope.operators.dicom_loader.core import DicomLoader

#: Sets decoded on the GPU with ``--nvimgcodec`` (JPEG baseline), besides every ``PATH`` given.
NVIMGCODEC_SETS = ("sample_photos", "photos_jpeg")


def _decodable(files: list[Path]) -> list[Path]:
    loader = DicomLoader(workers=1, isolate=False)
    return [f for f in files if loader.load_file_result(f).error is None]


def default_sets(folder: Path) -> dict[str, list[Path]]:
    """The shipped sample photographs wrapped as DICOM into ``folder``, and pydicom's test files."""
    from burnscope.operators.preprocess.calibration import image_files, sample_photo_dirs
    from burnscope.operators.dicom_loader.photo import wrap_photo

    photos = []
    for photo in image_files(sample_photo_dirs()):
        photos.append(folder / f"sample-{photo.stem}.dcm")
        wrap_photo(photo, photos[-1])
    bundled_dir = Path(pydicom.__file__).parent / "data" / "test_files"
    bundled = [p for p in sorted(bundled_dir.iterdir()) if p.is_file()]
    return {"sample_photos": _decodable(photos), "pydicom_bundled": _decodable(bundled)}


def photo_sets(folder: Path, count: int, size: tuple[int, int]) -> dict[str, list[Path]]:
    """``count`` smooth synthetic photos of ``size`` (cols, rows), as JPEG- and as raw-DICOM."""
    import numpy as np
    from PIL import Image

    from burnscope.operators.dicom_loader.photo import wrap_photo

    rng = np.random.default_rng(0)
    sets: dict[str, list[Path]] = {"photos_jpeg": [], "photos_uncompressed": []}
    for i in range(count):
        coarse = rng.integers(60, 230, (size[1] // 32, size[0] // 32, 3), dtype=np.uint8)
        img = Image.fromarray(coarse).resize(size, Image.BICUBIC)
        img.save(folder / f"photo{i}.jpg", quality=90)
        img.save(folder / f"photo{i}.png")
        wrap_photo(folder / f"photo{i}.jpg", folder / f"photo{i}-jpeg.dcm")
        wrap_photo(folder / f"photo{i}.png", folder / f"photo{i}-raw.dcm")
        sets["photos_jpeg"].append(folder / f"photo{i}-jpeg.dcm")
        sets["photos_uncompressed"].append(folder / f"photo{i}-raw.dcm")
    return sets


def bench(files: list[Path], workers: int, repeat: int, plugin: str = "", executor: str = "thread") -> dict[str, Any]:
    with DicomLoader(workers=workers, decoding_plugin=plugin, max_pixels=1 << 31, executor=executor,
                     isolate=False) as loader:  # the in-process executors; benchmarks.isolation compares isolation
        images = sum(len(r.images) for r in loader.iter_file_results(files))  # warm-up (starts a pool)
        times = []
        for _ in range(repeat):
            start = time.perf_counter()
            count = sum(len(r.images) for r in loader.iter_file_results(files))
            times.append(time.perf_counter() - start)
            assert count == images
    best, median = min(times), statistics.median(times)
    return {
        "workers": workers,
        "executor": executor if workers > 1 else "serial",
        "decoding_plugin": plugin or "pydicom default",
        "files": len(files),
        "images": images,
        "best_s": round(best, 4),
        "median_s": round(median, 4),
        "images_per_s_best": round(images / best, 1),
        "images_per_s_median": round(images / median, 1),
        "ms_per_image_median": round(1000 * median / images, 3),
    }


def _jpeg_frames(files: list[Path]) -> list[bytes]:
    """JPEG baseline bitstreams of every frame of ``files`` (other transfer syntaxes skipped)."""
    from pydicom.encaps import generate_frames

    streams: list[bytes] = []
    for f in files:
        ds = pydicom.dcmread(f)
        if ds.file_meta.TransferSyntaxUID != "1.2.840.10008.1.2.4.50":
            continue
        frames = int(ds.get("NumberOfFrames", 1) or 1)
        streams.extend(generate_frames(ds.PixelData, number_of_frames=frames))
    return streams


def bench_nvimgcodec(files: list[Path], repeat: int, copies: int) -> dict[str, Any] | None:
    """GPU JPEG decode with nvImageCodec (batched), to device memory and back to the host.

    Returns None when nvImageCodec or a GPU is missing. Pixels are compared with the loader's.
    """
    try:
        import cupy as cp
        import numpy as np
        from nvidia import nvimgcodec
    except ImportError:
        return None
    streams = _jpeg_frames(files)
    if not streams:
        return None
    reference: list[Any] = []
    for result in DicomLoader(workers=1, max_pixels=1 << 31, isolate=False).iter_file_results(files):
        if result.error is None and result.infos[0].transfer_syntax_uid == "1.2.840.10008.1.2.4.50":
            reference.extend(record.pixels for record in result.images)
    decoder = nvimgcodec.Decoder()
    batch = streams * copies
    images = decoder.decode(batch)  # warm-up
    host = [np.asarray(img.cpu()) for img in images[: len(streams)]]
    max_diff = max(int(np.abs(h.astype(int) - ref.astype(int)).max()) for h, ref in zip(host, reference))
    device_times, host_times = [], []
    for _ in range(repeat):
        start = time.perf_counter()
        images = decoder.decode(batch)
        arrays = [cp.asarray(img) for img in images]
        cp.cuda.Device().synchronize()
        device_times.append(time.perf_counter() - start)
        start = time.perf_counter()
        images = decoder.decode(batch)
        _ = [np.asarray(img.cpu()) for img in images]
        host_times.append(time.perf_counter() - start)
    del arrays
    n = len(batch)
    return {
        "images": n,
        "images_per_s_gpu_resident": round(n / statistics.median(device_times), 1),
        "images_per_s_to_host": round(n / statistics.median(host_times), 1),
        "max_abs_diff_vs_cpu_decode": max_diff,
        "nvimgcodec": getattr(nvimgcodec, "__version__", "?"),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="*", type=Path, help="extra inputs (DICOM files or folders), one set each")
    parser.add_argument("--workers", nargs="+", type=int, default=None)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--copies", type=int, default=4)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--nvimgcodec", action="store_true", help="also decode the JPEG sets on the GPU")
    parser.add_argument("--processes", action="store_true", help="also measure the process-pool executor")
    parser.add_argument("--photos", type=int, default=6, help="generated photographs (0: none)")
    parser.add_argument("--photo-size", type=int, nargs=2, default=(2016, 1512), metavar=("COLS", "ROWS"))
    args = parser.parse_args(argv)
    cpus = os.cpu_count() or 1
    workers = args.workers or sorted({1, 2, min(4, cpus), cpus})
    tmp = tempfile.TemporaryDirectory(prefix="burnscope-bench-decode-")
    sets = default_sets(Path(tmp.name))
    for p in args.paths:
        sets[str(p)] = _decodable(DicomLoader().scan(p))
    if args.photos:
        sets.update(photo_sets(Path(tmp.name), args.photos, tuple(args.photo_size)))
    results: dict[str, Any] = {
        "host": {"cpus": cpus, "machine": platform.machine(), "python": platform.python_version(),
                 "pydicom": pydicom.__version__},
        "copies": args.copies,
        "photo_size": list(args.photo_size),
        "repeat": args.repeat,
        "sets": {},
    }
    for name, files in sets.items():
        files = files * (args.copies if not name.startswith("photos") else 1)
        rows = [bench(files, w, args.repeat) for w in workers]
        if args.processes:
            rows += [bench(files, w, args.repeat, executor="process") for w in workers if w > 1]
        if name == "photos_jpeg":  # Pillow's libjpeg-turbo against pylibjpeg's libjpeg
            rows += [bench(files, w, args.repeat, plugin="pillow") for w in workers]
        serial = rows[0]["images_per_s_median"]  # workers=1, default plugin
        for row in rows:
            row["speedup_vs_serial"] = round(row["images_per_s_median"] / serial, 2)
        results["sets"][name] = rows
        print(f"{name}: {rows[0]['files']} files, {rows[0]['images']} images")
        for row in rows:
            print(f"  workers={row['workers']:>2} {row['executor']:>7} {row['decoding_plugin']:>15}  "
                  f"{row['images_per_s_median']:>9.1f} images/s  "
                  f"({row['ms_per_image_median']:.3f} ms/image, ×{row['speedup_vs_serial']})")
    if args.nvimgcodec:
        results["nvimgcodec"] = {}
        for name in [*NVIMGCODEC_SETS, *map(str, args.paths)]:
            if name in sets:
                row = bench_nvimgcodec(sets[name], args.repeat, copies=8 if name == "photos_jpeg" else 64)
                results["nvimgcodec"][name] = row
                print(f"nvImageCodec {name}: {row}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    tmp.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
