"""burn-triage over Holoscan's distributed engine: driver and workers as separate processes.

Holoscan's driver, workers and UCX receivers listen on every interface, so these tests run in a
network namespace that has loopback only (as the Orthanc tests do): from a normal shell,
:func:`test_in_loopback_namespace` re-executes this module under ``unshare -n`` (root needed) and
asserts that it passed. Inside, real ``burnscope run burn-triage`` processes are started:

* driver (``ingest,reporting``) + worker (``inference``): reports equal to the default
  single-process run's (byte for byte, as ``tools/compare_reports.py`` compares; labels exact and
  probabilities within 1e-5 checked on their own), the bytes on each link measured;
* three processes (one fragment each): the ledger travels with the intake messages;
* the worker SIGKILLed mid-run: the driver exits 3 within the link timeout, its summary lists
  the images not reported, and reported + lost add up to what was accepted.

Every process has a deadline (Holoscan's driver waits for ever for a worker that never comes).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fixtures import REPO, SAMPLE_DATA
from fixtures.cli_process import RunProcess, reports_by_image, summary, tiny_config
from fixtures.orthanc_local import can_unshare_network, free_port, in_loopback_namespace, loopback_namespace_command

pytestmark = [pytest.mark.network, pytest.mark.slow]

INSIDE = in_loopback_namespace()
inside_only = pytest.mark.skipif(not INSIDE, reason="runs inside a loopback-only network namespace")
ENV = {"SOURCE_DATE_EPOCH": "1764633600"}
DEADLINE_S = 400.0


@pytest.mark.skipif(INSIDE, reason="already inside the namespace")
def test_in_loopback_namespace():
    if not can_unshare_network():
        pytest.skip("cannot create a network namespace here (unshare -n needs root)")
    cmd = loopback_namespace_command(
        [sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider", "-o", "addopts=", "--tb=short", __file__]
    )
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=1800, cwd=REPO)
    report = out.stdout[-30000:] + out.stderr[-3000:]  # every failure's digest of the process logs
    assert out.returncode == 0, report
    last = out.stdout.strip().splitlines()[-1]
    assert "4 passed, 1 skipped" in last and "failed" not in last, report
    print(out.stdout[-4000:])  # the bytes-per-link table


# ---------------------------------------------------------------------------- inside the namespace


def _lo_bytes() -> int:
    for line in Path("/proc/net/dev").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name.strip() == "lo":
            return int(rest.split()[0])  # received = sent on loopback
    raise AssertionError("no loopback interface")


def _digest(**procs: RunProcess) -> str:
    """What a failure message needs of each process's log: its last 40 lines, without the
    CUDA-driver warnings Holoscan prints on a machine without a GPU."""
    parts = []
    for name, proc in procs.items():
        lines = [ln for ln in proc.output().splitlines() if ln.strip() and "CUDA" not in ln and "GPU" not in ln]
        parts.append(f"--- {name}\n" + "\n".join(lines[-40:]))
    return "\n".join(parts)


def _finish(procs: dict[str, RunProcess], timeout: float = DEADLINE_S) -> dict[str, int]:
    """Wait for every process (by the deadline, else kill them all and fail with their logs)."""
    end = time.monotonic() + timeout
    codes: dict[str, int] = {}
    try:
        for name, proc in procs.items():
            codes[name] = proc.wait(timeout=max(1.0, end - time.monotonic()))
    except subprocess.TimeoutExpired:
        logs = _digest(**procs)
        for proc in procs.values():
            proc.kill()
        raise AssertionError(f"not finished within {timeout} s:\n{logs}")
    return codes


def _default_run(tmp_path: Path, config: Path) -> Path:
    out = tmp_path / "single"
    proc = RunProcess(["run", "burn-triage", "-i", str(SAMPLE_DATA), "-o", str(out), "-c", str(config), "-q"],
                      tmp_path / "single.log", env=ENV)
    assert _finish({"single": proc})["single"] == 0, proc.output()[-3000:]
    return out


def _assert_same_reports(single: Path, other: Path) -> None:
    compared = subprocess.run([sys.executable, str(REPO / "tools" / "compare_reports.py"), str(single), str(other)],
                              capture_output=True, text=True, timeout=300)
    assert compared.returncode == 0 and "identical" in compared.stdout, compared.stdout[-3000:] + compared.stderr
    a, b = reports_by_image(single), reports_by_image(other)
    assert set(a) == set(b) and len(a) == 10
    for key in a:
        fa = json.loads(a[key][0].read_text())["finding"]
        fb = json.loads(b[key][0].read_text())["finding"]
        assert fa["label"] == fb["label"]
        assert fa["probabilities"].keys() == fb["probabilities"].keys()
        assert all(abs(fa["probabilities"][k] - fb["probabilities"][k]) <= 1e-5 for k in fa["probabilities"])


def _cli(*args: str) -> list[str]:
    return ["run", "burn-triage", *args]


@inside_only
def test_driver_and_worker_write_the_single_process_reports(tmp_path):
    config = tiny_config(tmp_path)
    single = _default_run(tmp_path, config)
    out = tmp_path / "dist"
    port, worker_port = free_port(), free_port()
    before = _lo_bytes()
    driver = RunProcess(_cli("-i", str(SAMPLE_DATA), "-o", str(out), "-c", str(config), "-q", "--driver", "--worker",
                             "--fragments", "ingest,reporting", "--address", f"127.0.0.1:{port}"),
                        tmp_path / "driver.log", env=ENV)
    worker = RunProcess(_cli("-c", str(config), "-q", "--worker", "--fragments", "inference",
                             "--address", f"127.0.0.1:{port}", "--worker-address", f"127.0.0.1:{worker_port}"),
                        tmp_path / "worker.log", env=ENV)
    codes = _finish({"driver": driver, "worker": worker})
    wire = _lo_bytes() - before
    assert codes == {"driver": 0, "worker": 0}, _digest(driver=driver, worker=worker)
    _assert_same_reports(single, out)
    s = summary(out)
    acc = s["accounting"]
    assert (acc["accepted"], acc["reported"], acc["errors"], acc["lost"]) == (12, 10, 2, 0) and acc["balanced"]
    assert s["run"]["outcome"] == "drained" and s["exit"]["code"] == 0
    assert s["model"]["demo"] is True and "warning" in s
    links = s["distributed"]["links"]
    # uint8 224×224×3 per image, never the float32 tensor (4×)
    assert 224 * 224 * 3 <= links["ingest→inference"]["payload_bytes_per_image"] < 224 * 224 * 3 * 1.02
    assert links["inference→reporting"]["payload_bytes_per_image"] < 1024  # findings, no embeddings, no pixels
    table = {name: row.get("payload_bytes_per_image") for name, row in links.items()}
    print(f"\nBYTES {json.dumps({'links_payload_per_image': table, 'loopback_bytes_total': wire, 'images': 10})}")
    # patient data never reaches the inference host: nothing pickled there names the patient
    assert "Doe" not in worker.output() and "PID-" not in worker.output()


@inside_only
def test_three_processes_one_fragment_each(tmp_path):
    config = tiny_config(tmp_path)
    single = _default_run(tmp_path, config)
    out = tmp_path / "dist3"
    port = free_port()
    # -i on the reporting host only names the reports (they mirror the input's folders)
    driver = RunProcess(_cli("-i", str(SAMPLE_DATA), "-o", str(out), "-c", str(config), "-q", "--driver", "--worker",
                             "--fragments", "reporting", "--address", f"127.0.0.1:{port}"),
                        tmp_path / "reporting.log", env=ENV)
    ingest = RunProcess(_cli("-i", str(SAMPLE_DATA), "-c", str(config), "-q", "--worker", "--fragments", "ingest",
                             "--address", f"127.0.0.1:{port}", "--worker-address", f"127.0.0.1:{free_port()}"),
                        tmp_path / "ingest.log", env=ENV)
    inference = RunProcess(_cli("-c", str(config), "-q", "--worker", "--fragments", "inference",
                                "--address", f"127.0.0.1:{port}", "--worker-address", f"127.0.0.1:{free_port()}"),
                           tmp_path / "inference.log", env=ENV)
    codes = _finish({"reporting": driver, "ingest": ingest, "inference": inference})
    logs = _digest(reporting=driver, ingest=ingest, inference=inference)
    assert codes == {"reporting": 0, "ingest": 0, "inference": 0}, logs
    _assert_same_reports(single, out)
    acc = summary(out)["accounting"]
    assert (acc["accepted"], acc["reported"], acc["errors"], acc["lost"]) == (12, 10, 2, 0) and acc["balanced"]


@inside_only
def test_killed_worker_is_a_clear_failure_with_the_accounting(tmp_path):
    # one image every 3 s: the run is still going when the worker dies. The link timeout must
    # exceed the longest a busy fragment may take to read a heartbeat (this 2-core box renders
    # six report formats per image while other jobs run).
    config = tiny_config(tmp_path, extra="  period_ms: 3000\ndistributed:\n  link_timeout_s: 20\n")
    config.write_text(config.read_text().replace("batch_size: 3", "batch_size: 1"))
    out = tmp_path / "dist"
    port, worker_port = free_port(), free_port()
    driver = RunProcess(_cli("-i", str(SAMPLE_DATA), "-o", str(out), "-c", str(config), "-q", "--driver", "--worker",
                             "--fragments", "ingest,reporting", "--address", f"127.0.0.1:{port}"),
                        tmp_path / "driver.log", env=ENV)
    worker = RunProcess(_cli("-c", str(config), "-q", "--worker", "--fragments", "inference",
                             "--address", f"127.0.0.1:{port}", "--worker-address", f"127.0.0.1:{worker_port}"),
                        tmp_path / "worker.log", env=ENV)
    try:
        deadline = time.monotonic() + DEADLINE_S
        while not reports_by_image(out):
            assert time.monotonic() < deadline, driver.output()[-3000:]
            assert driver.proc.poll() is None and worker.proc.poll() is None, driver.output()[-3000:]
            time.sleep(0.2)
        worker.kill()
        killed_at = time.monotonic()
        code = _finish({"driver": driver}, timeout=120)["driver"]
    finally:
        worker.kill()
        driver.kill()
    took = time.monotonic() - killed_at
    assert code == 3, driver.output()[-3000:]
    assert 15 <= took < 20 + 40, took  # the link timeout, plus writing the summary
    assert "fragment 'inference' went silent" in driver.output()
    s = summary(out)
    acc = s["accounting"]
    assert s["exit"]["code"] == 3 and s["distributed"]["lost"]["fragment"] == "inference"
    assert not s["distributed"]["complete"]
    assert acc["lost"] >= 1 and acc["balanced"], acc
    reported = {uid for uid, _ in reports_by_image(out)}
    listed = {item["label"].split("#")[0] for item in acc["lost_items"]}
    assert len(acc["lost_items"]) == acc["lost"] and not listed & reported
    # nothing silently lost: every accepted image is reported, an error record, or listed
    assert acc["accepted"] == acc["reported"] + acc["errors"] + acc["skipped"] + acc["lost"]
    assert acc["reported"] == len(reports_by_image(out)) < 10
    # files not read yet are counted (not accepted, so not lost)
    assert s["files"] == 11 and s["run"]["files_not_started"] >= 1


@inside_only
def test_serve_watched_folder_as_fragments_in_one_process(tmp_path):
    """``serve --watch`` with ``--fragments all``: the three fragments in one process over UCX
    (Holoscan's local mode: no driver service), the intake journal kept (ingest and reporting
    share the process), every file reported."""
    import shutil

    config = tiny_config(tmp_path)
    watched = tmp_path / "watched"
    shutil.copytree(SAMPLE_DATA / "study-001", watched / "study-001")
    out = tmp_path / "served"
    proc = RunProcess(["serve", "burn-triage", "--watch", str(watched), "-o", str(out), "-c", str(config),
                       "--stop-after-idle", "4", "--fragments", "all"], tmp_path / "serve.log", env=ENV)
    code = _finish({"serve": proc})["serve"]
    assert code == 0, _digest(serve=proc)
    s = summary(out)
    acc = s["accounting"]
    expected = len(list((watched / "study-001").glob("*.dcm")))
    assert acc["reported"] == len(reports_by_image(out)) == expected == 3 and acc["lost"] == 0 and acc["balanced"]
    assert s["distributed"]["fragments"] == ["ingest", "inference", "reporting"]
    assert s["journal"]["failures"] == 0 and (out / "journal.sqlite").exists()
