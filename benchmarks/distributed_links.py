"""Bytes per image on each link of distributed burn-triage (driver + worker as two processes).

For each batch size, ``burnscope run burn-triage`` runs as a driver (``ingest,reporting``) and a
worker (``inference``) on a private loopback (``unshare -n``: Holoscan listens on every
interface, and the loopback counters then count only this run). Reported per link: messages and
payload bytes per image as the link operators counted them (``summary.json`` →
``distributed.links``); for the whole run: bytes on ``lo`` per image (payload + UCX/Holoscan
headers + gRPC control + heartbeats), wall time, and that the accounting balanced.

    sudo python -m burnscope.benchmarks.distributed_links -i sample_data --batch-sizes 1,8 \\
        --model-config biomedclip-tiny --json docs/benchmarks/distributed/links.json

Without ``-i``: the photographs installed with burnscope, as DICOM. Needs root (``unshare -n``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

NAMESPACE_ENV = "BURNSCOPE_IN_NETNS"
CLI = [sys.executable, "-m", "burnscope.applications.cli"]
FLOAT32_PER_IMAGE = 3 * 224 * 224 * 4  # what a float32 input tensor would be


def _lo_bytes() -> int:
    for line in Path("/proc/net/dev").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name.strip() == "lo":
            return int(rest.split()[0])
    raise RuntimeError("no loopback interface")


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _input_folder(path: str | None) -> Path:
    if path:
        return Path(path)
    from .service_load import sample_datasets

    folder = Path(tempfile.mkdtemp(prefix="burnscope-links-"))
    for i, ds in enumerate(sample_datasets(None)):
        ds.save_as(folder / f"img-{i:03d}.dcm")
    return folder


def run_once(input_dir: Path, work: Path, batch_size: int, model_config: str, timeout_s: float = 900) -> dict[str, Any]:
    """One driver + worker run; its link table and loopback bytes."""
    work.mkdir(parents=True, exist_ok=True)
    config = work / "config.yaml"
    config.write_text(f"inference:\n  model_config: {model_config}\nsource:\n  batch_size: {batch_size}\n")
    out = work / "out"
    port, worker_port = _free_port(), _free_port()
    env = {**os.environ, "SOURCE_DATE_EPOCH": "1764633600"}
    before, started = _lo_bytes(), time.perf_counter()
    with open(work / "driver.log", "wb") as dlog, open(work / "worker.log", "wb") as wlog:
        driver = subprocess.Popen([*CLI, "run", "burn-triage", "-i", str(input_dir), "-o", str(out), "-c", str(config),
                                   "-q", "--driver", "--worker", "--fragments", "ingest,reporting",
                                   "--address", f"127.0.0.1:{port}"], stdout=dlog, stderr=subprocess.STDOUT, env=env)
        worker = subprocess.Popen([*CLI, "run", "burn-triage", "-c", str(config), "-q", "--worker", "--fragments",
                                   "inference", "--address", f"127.0.0.1:{port}", "--worker-address",
                                   f"127.0.0.1:{worker_port}"], stdout=wlog, stderr=subprocess.STDOUT, env=env)
        try:
            codes = (driver.wait(timeout=timeout_s), worker.wait(timeout=60))
        except subprocess.TimeoutExpired:
            driver.kill()
            worker.kill()
            raise RuntimeError(f"batch {batch_size}: not finished within {timeout_s} s (logs in {work})")
    wall = time.perf_counter() - started
    wire = _lo_bytes() - before
    summary = json.loads((out / "summary.json").read_text())
    images = int(summary["accounting"]["reported"])
    return {
        "batch_size": batch_size,
        "exit_codes": list(codes),
        "images": images,
        "balanced": bool(summary["accounting"]["balanced"]) and not summary["accounting"]["lost"],
        "links": summary["distributed"]["links"],
        "loopback_bytes": wire,
        "loopback_bytes_per_image": round(wire / images, 1) if images else None,
        "wall_s": round(wall, 2),
    }


def run(input_path: str | None, batch_sizes: list[int], model_config: str) -> dict[str, Any]:
    from .environment import cpu_facts

    folder = _input_folder(input_path)
    work = Path(tempfile.mkdtemp(prefix="burnscope-links-work-"))
    try:
        runs = [run_once(folder, work / f"batch{b}", b, model_config) for b in batch_sizes]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return {"benchmark": "distributed_links", "input": str(input_path or "installed sample photographs"),
            "model_config": model_config, "float32_tensor_bytes_per_image": FLOAT32_PER_IMAGE,
            "machine": cpu_facts(), "runs": runs}


def print_table(result: dict[str, Any]) -> None:
    print(f"{'batch':>5}  {'link':<40} {'messages':>8} {'payload B/image':>16}")
    for r in result["runs"]:
        for name, row in r["links"].items():
            per = row.get("payload_bytes_per_image")
            print(f"{r['batch_size']:>5}  {name:<40} {row['messages']:>8} {per if per is not None else '-':>16}")
        print(f"{r['batch_size']:>5}  {'(all, on lo: payload + headers + control)':<40} {'':>8} "
              f"{r['loopback_bytes_per_image']:>16}   images {r['images']}, wall {r['wall_s']} s, "
              f"exit {r['exit_codes']}, balanced {r['balanced']}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-i", "--input", help="DICOM folder (default: the installed sample photographs as DICOM)")
    parser.add_argument("--batch-sizes", default="1,8", help="comma-separated (default 1,8)")
    parser.add_argument("--model-config", default="biomedclip", help="model config (biomedclip-tiny for a quick run)")
    parser.add_argument("--json", help="also write the figures as JSON")
    args = parser.parse_args(argv)
    if os.environ.get(NAMESPACE_ENV) != "1":  # re-run inside a loopback-only network namespace
        if not shutil.which("unshare"):
            print("needs unshare -n (util-linux) and root: Holoscan listens on every interface", file=sys.stderr)
            return 2
        inner = " ".join(map(_quote, [sys.executable, "-m", "burnscope.benchmarks.distributed_links",
                                      *(argv if argv is not None else sys.argv[1:])]))
        return subprocess.call(["unshare", "-n", "sh", "-c", f"ip link set lo up && {NAMESPACE_ENV}=1 exec {inner}"])
    sizes = [int(b) for b in args.batch_sizes.split(",") if b.strip()]
    result = run(args.input, sizes, args.model_config)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")  # before the table
    print_table(result)
    return 0


def _quote(text: str) -> str:
    import shlex

    return shlex.quote(text)


if __name__ == "__main__":
    raise SystemExit(main())
