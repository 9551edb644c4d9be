"""Run the fuzz harnesses for N executions each; write a JSON and a markdown summary.

    nice -n 19 python fuzz/campaign.py --runs 1000000 [--harness loader photo ...] [--out fuzz/out]
    python fuzz/campaign.py --seconds 10          # a short smoke: each harness for 10 s

Each harness runs as its own libFuzzer process (``-timeout`` seconds per input, ``-rss_limit_mb``
memory limit) on its corpus folder (seeded from ``sample_data`` by ``fuzz/seeds.py`` when
missing; grown by the fuzzer). A crash, a timeout or an out-of-memory input stops libFuzzer;
the campaign records it (the input is kept as ``OUT/artifacts/<harness>-crash-*``) and runs the
harness on for the executions that are left, up to ``--max-crashes`` times. ``OUT/<harness>.json``
holds one harness's figures; ``OUT/summary.json`` and ``OUT/summary.md`` all harnesses' found
in ``OUT`` (so harnesses can be run one at a time and summed up later with ``--summarise``).
Exit code 1 when any harness found something.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
HARNESSES = ("loader", "photo", "case", "selector", "scp")

_DONE = re.compile(r"Done (\d+) runs in (\d+) second")
_STATUS = re.compile(r"#(\d+)\s+\w+\s+cov: (\d+) ft: (\d+) corp: (\d+)/(\S+)")
_STAT = re.compile(r"stat::(\w+):\s+(\d+)")
_ARTIFACT = re.compile(r"Test unit written to (\S+)")
_KIND = re.compile(r"ERROR: libFuzzer: ([\w-]+)|(Uncaught Python exception)")


def _parse(log: str) -> dict[str, Any]:
    out: dict[str, Any] = {"executions": 0, "cov": None, "ft": None, "corpus_units": None, "peak_rss_mb": None}
    status = _STATUS.findall(log)
    if status:
        last = status[-1]
        out.update(executions=int(last[0]), cov=int(last[1]), ft=int(last[2]), corpus_units=int(last[3]))
    done = _DONE.search(log)
    if done:
        out["executions"] = int(done.group(1))
    stats = dict(_STAT.findall(log))
    if "number_of_executed_units" in stats:
        out["executions"] = int(stats["number_of_executed_units"])
    if "peak_rss_mb" in stats:
        out["peak_rss_mb"] = int(stats["peak_rss_mb"])
    artifact = _ARTIFACT.search(log)
    out["artifact"] = artifact.group(1) if artifact else None
    kind = _KIND.search(log)
    out["failure"] = (kind.group(1) or "uncaught-exception") if kind else None
    exc = re.search(r"=== Uncaught Python exception: ===\n(.+)", log)
    out["exception"] = exc.group(1).strip() if exc else None
    return out


def run_harness(name: str, runs: int | None, seconds: float | None, corpus: Path, out: Path, *, timeout: int,
                rss_limit_mb: int, max_len: int, max_crashes: int) -> dict[str, Any]:
    corpus.mkdir(parents=True, exist_ok=True)
    artifacts = out / "artifacts"
    artifacts.mkdir(parents=True, exist_ok=True)
    total, crashes, started, peak = 0, [], time.monotonic(), None
    result: dict[str, Any] = {}
    attempt = 0
    while True:
        attempt += 1
        args = [sys.executable, str(HERE / f"fuzz_{name}.py"), f"-timeout={timeout}", f"-rss_limit_mb={rss_limit_mb}",
                f"-max_len={max_len}", f"-artifact_prefix={artifacts}/{name}-", "-print_final_stats=1",
                "-print_pcs=0", str(corpus)]
        if runs is not None:
            args.insert(2, f"-runs={max(1, runs - total)}")
        if seconds is not None:
            left = seconds - (time.monotonic() - started)
            if left <= 1:
                break
            args.insert(2, f"-max_total_time={max(1, int(left))}")
        log_path = out / f"{name}.log" if attempt == 1 else out / f"{name}.{attempt}.log"
        with open(log_path, "w") as log_file:
            proc = subprocess.run(args, cwd=HERE, stdout=log_file, stderr=subprocess.STDOUT)
        result = _parse(log_path.read_text(errors="replace"))
        total += result["executions"]
        if result["peak_rss_mb"] is not None:
            peak = max(peak or 0, result["peak_rss_mb"])
        if result["failure"] or proc.returncode != 0:
            crashes.append({"kind": result["failure"] or f"exit {proc.returncode}", "exception": result["exception"],
                            "input": result["artifact"], "after_executions": total, "log": log_path.name})
            if len(crashes) >= max_crashes or result["artifact"] is None:
                break  # nothing to step past (a harness that cannot start): stop here
            continue
        if runs is None or total >= runs:
            break
    return {
        "harness": name,
        "executions": total,
        "seconds": round(time.monotonic() - started, 1),
        "executions_per_s": round(total / max(1e-9, time.monotonic() - started), 1),
        "coverage_edges": result.get("cov"),
        "features": result.get("ft"),
        "corpus_units": result.get("corpus_units"),
        "peak_rss_mb": peak,  # the largest of all restarts
        "crashes": crashes,
        "limits": {"timeout_s": timeout, "rss_limit_mb": rss_limit_mb, "max_len": max_len},
    }


def status(out: Path) -> list[dict[str, Any]]:
    """Executions so far per harness from the logs in ``out`` (also while a campaign runs)."""
    rows = []
    for name in HARNESSES:
        logs = sorted(out.glob(f"{name}.log")) + sorted(out.glob(f"{name}.*.log"),
                                                         key=lambda p: int(p.suffixes[0][1:]))
        if not logs:
            continue
        parsed = [_parse(p.read_text(errors="replace")) for p in logs]
        done = (out / f"{name}.json").is_file()
        rows.append({"harness": name, "executions": sum(r["executions"] for r in parsed), "finished": done,
                     "findings": sum(bool(r["failure"]) for r in parsed), "coverage_edges": parsed[-1]["cov"],
                     "features": parsed[-1]["ft"]})
        print(f"{name}: {rows[-1]['executions']:,} executions so far, {rows[-1]['findings']} finding(s), "
              f"cov {rows[-1]['coverage_edges']}, ft {rows[-1]['features']}"
              f"{' (finished)' if done else ' (running or stopped)'}")
    return rows


def summarise(out: Path) -> dict[str, Any]:
    rows = [json.loads(p.read_text()) for p in sorted(out.glob("*.json")) if p.stem in HARNESSES]
    cpu = ""
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    summary = {"python": platform.python_version(), "cpu": cpu, "cpus": os.cpu_count(), "harnesses": rows}
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    lines = ["| harness | executions | time (s) | exec/s | coverage (edges) | features | corpus | peak RSS (MB) | crashes |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['harness']} | {r['executions']:,} | {r['seconds']:,} | {r['executions_per_s']:,} | "
                     f"{r['coverage_edges']} | {r['features']} | {r['corpus_units']} | {r['peak_rss_mb']} | "
                     f"{len(r['crashes'])} |")
    for r in rows:
        for c in r["crashes"]:
            lines.append(f"\n- {r['harness']}: {c['kind']} after {c['after_executions']:,} executions"
                         f"{': ' + c['exception'] if c['exception'] else ''} (input {c['input']})")
    (out / "summary.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--harness", nargs="+", choices=HARNESSES, default=list(HARNESSES))
    parser.add_argument("--runs", type=int, default=None, help="executions per harness")
    parser.add_argument("--seconds", type=float, default=None, help="time per harness (instead of --runs)")
    parser.add_argument("--corpus", type=Path, default=HERE / "corpus")
    parser.add_argument("--out", type=Path, default=HERE / "out")
    parser.add_argument("--timeout", type=int, default=5, help="seconds one input may take")
    parser.add_argument("--rss-limit-mb", type=int, default=2048)
    parser.add_argument("--max-len", type=int, default=65536, help="largest input in bytes")
    parser.add_argument("--max-crashes", type=int, default=20, help="stop a harness after this many findings")
    parser.add_argument("--jobs", type=int, default=1, help="harnesses run at the same time")
    parser.add_argument("--summarise", action="store_true", help="only rebuild the summary from OUT/*.json")
    parser.add_argument("--status", action="store_true", help="only print executions so far, from OUT's logs")
    args = parser.parse_args(argv)
    args.out, args.corpus = args.out.resolve(), args.corpus.resolve()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.status:
        status(args.out)
        return 0
    if args.summarise:
        summary = summarise(args.out)
        return int(any(r["crashes"] for r in summary["harnesses"]))
    if args.runs is None and args.seconds is None:
        parser.error("give --runs or --seconds")
    if not all((args.corpus / h).is_dir() for h in args.harness):
        subprocess.run([sys.executable, str(HERE / "seeds.py"), "--out", str(args.corpus)], check=True)
    def one(name: str) -> bool:
        row = run_harness(name, args.runs, args.seconds, args.corpus / name, args.out, timeout=args.timeout,
                          rss_limit_mb=args.rss_limit_mb, max_len=args.max_len, max_crashes=args.max_crashes)
        (args.out / f"{name}.json").write_text(json.dumps(row, indent=2) + "\n")
        print(f"{name}: {row['executions']:,} executions in {row['seconds']} s, cov {row['coverage_edges']}, "
              f"ft {row['features']}, {len(row['crashes'])} finding(s)", flush=True)
        return bool(row["crashes"])

    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:  # each harness is its own process
        found = any(list(pool.map(one, args.harness)))
    summarise(args.out)
    return int(found)


if __name__ == "__main__":
    sys.exit(main())
