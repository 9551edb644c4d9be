"""`burnscope serve burn-triage` as an operations team runs it: a real subprocess with the C-STORE
SCP, a watched folder and the metrics port; images sent with pynetdicom (STAT ones at DIMSE
Priority HIGH after routine ones already queued), /metrics read with prometheus_client's parser,
SIGTERM; a second SIGTERM; and the errors a bad start gives, each one line."""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest
from fixtures.orthanc_local import free_port
from fixtures.service import copies, get, images_total, scrape, send, start_serve, wait_listening, wait_reported

pytestmark = [pytest.mark.network]

# PDF rendering (~tens of ms per image) in one worker keeps routine images queued while STAT ones arrive
SLOW_REPORTS = "report:\n  formats: [json, txt, pdf]\n  study_rollup: false\nreporting:\n  workers: 1\n" \
               "batching:\n  max_batch: 4\n  max_delay_ms: 5\n"


@pytest.mark.slow
def test_serve_reports_stat_first_counts_in_metrics_and_stops_cleanly_on_sigterm(tmp_path):
    port, mport = free_port(), free_port()
    out, watched = tmp_path / "out", tmp_path / "incoming"
    proc = start_serve(tmp_path, SLOW_REPORTS, "-o", str(out), "--listen", str(port), "--watch", str(watched),
                       "--metrics-port", str(mport))
    try:
        wait_listening(proc, port)
        assert get(mport, "/healthz") == (200, "ok\n")
        routine, stat, dropped = copies(16), copies(3), copies(2)
        assert send(port, routine) == [0] * 16
        # routine images still waiting when the STAT ones arrive (a loaded machine reports some at once)
        waiting = 16 - len([p for p in out.glob("*.json") if p.name != "summary.json"])
        assert send(port, stat, priority=1) == [0] * 3  # DIMSE Priority HIGH
        for ds in dropped:  # the watched folder feeds the same graph
            ds.save_as(watched / f"{ds.SOPInstanceUID}.dcm", enforce_file_format=True)
        samples = wait_reported(mport, 21)
        assert images_total(samples, "reported", "stat") == 3
        assert images_total(samples, "reported", "routine") == 18
        assert images_total(samples, "error", "routine") == images_total(samples, "error", "stat") == 0
        assert samples[("burnscope_e2e_seconds_count", (("priority", "stat"),))] == 3
        assert samples[("burnscope_batch_size_count", (("lane", "stat"),))] >= 1
        assert samples[("burnscope_rejected_associations_total", ())] == 0
        assert samples[("burnscope_in_flight", ())] == 0
        info = next(dict(k[1]) for k in samples if k[0] == "burnscope_model_info")
        assert info["demo"] == "true" and info["backend"] == "onnxruntime"
        status, ready = get(mport, "/readyz")
        assert status == 200 and json.loads(ready)["ready"] is True
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=120) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["accounting"] == {"accepted": 21, "reported": 21, "errors": 0, "skipped": 0, "pending": 0, "lost": 0}
    assert summary["outcome"] == "drained"
    reports = {p.stem: p for p in out.glob("*.json") if p.name != "summary.json"}
    sent = {ds.SOPInstanceUID for ds in routine + stat} | {ds.SOPInstanceUID for ds in dropped}
    assert sent == set(reports)  # every image reported, once
    # STAT reports were written before routine ones that had been queued ahead of them
    order = sorted(reports, key=lambda uid: reports[uid].stat().st_mtime_ns)
    routine_uids = [ds.SOPInstanceUID for ds in routine]
    for ds in stat:
        after = [u for u in routine_uids if order.index(u) > order.index(ds.SOPInstanceUID)]
        # ahead of every waiting one but those already in the tower's batch (4), the renderer and the writer
        assert len(after) >= min(8, waiting - 6), (order.index(ds.SOPInstanceUID), len(after), waiting)
        report = json.loads(reports[ds.SOPInstanceUID].read_text())
        assert report["priority"] == {"level": "stat", "reason": "dimse_priority_high"}
        assert "PRIORITY: STAT" in reports[ds.SOPInstanceUID].with_suffix(".txt").read_text()
    assert "priority" not in json.loads(reports[routine_uids[-1]].read_text())


@pytest.mark.slow
def test_a_second_sigterm_exits_at_once_listing_what_was_pending(tmp_path):
    port = free_port()
    out = tmp_path / "out"
    proc = start_serve(tmp_path, SLOW_REPORTS + "service:\n  shutdown_timeout_s: 300\n", "-o", str(out),
                       "--listen", str(port))
    try:
        wait_listening(proc, port)
        send(port, copies(30))
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        proc.send_signal(signal.SIGTERM)
        started = time.monotonic()
        assert proc.wait(timeout=60) == 3
        assert time.monotonic() - started < 20
    finally:
        if proc.poll() is None:
            proc.kill()
    summary = json.loads((out / "summary.json").read_text())
    acc = summary["accounting"]
    assert summary["outcome"] == "forced" and acc["pending"] > 0
    assert acc["accepted"] == acc["reported"] + acc["errors"] + acc["skipped"] + acc["pending"]
    assert len(summary["pending"]) == acc["pending"]
    # acknowledged images are in the spool and the journal for the next start (test_serve_restart.py);
    # the summary names them by SOP UID only
    assert all(label.count(".") > 3 for label in summary["pending"])
    assert summary["journal"]["pending"] >= acc["pending"] and len(list((out / "spool").glob("*.dcm"))) == 30


def _serve(*args: str, config: str = "") -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "burnscope.applications.cli", "serve", "burn-triage", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def _one_error_line(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 2, result.stdout + result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and "Traceback" not in result.stderr, result.stderr
    return lines[0]


def test_an_unknown_priority_rule_is_one_line_at_start(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("priority:\n  rules:\n    - {attribute: RequestedProcedurePriorty, equals: [STAT]}\n")
    line = _one_error_line(_serve("-o", str(tmp_path / "out"), "--listen", str(free_port()), "-c", str(cfg)))
    assert "priority.rules[0].attribute: unknown DICOM keyword 'RequestedProcedurePriorty'" in line
    assert "did you mean RequestedProcedurePriority?" in line


def test_a_metrics_port_in_use_is_one_line_before_the_model_loads(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        started = time.monotonic()
        line = _one_error_line(_serve("-o", str(tmp_path / "out"), "--listen", str(free_port()), "--metrics-port", str(port)))
    assert line == f"error: --metrics-port {port} on 127.0.0.1: the port is in use by another process"
    assert time.monotonic() - started < 60


def test_an_unreadable_metrics_token_is_one_line_at_start(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"metrics:\n  token_file: {tmp_path / 'missing-token'}\n")
    line = _one_error_line(_serve("-o", str(tmp_path / "out"), "--listen", str(free_port()), "--metrics-port",
                                  str(free_port()), "-c", str(cfg)))
    assert line.startswith("error: metrics.token_file/token_env: ") and "missing-token" in line


@pytest.mark.parametrize("watch", ["out", "out/incoming", "."])
def test_a_source_reading_the_output_folder_is_one_line(tmp_path, watch):
    line = _one_error_line(_serve("-o", str(tmp_path / "out"), "--watch", str(tmp_path / watch)))
    assert "overlap: the watcher would read the reports" in line


@pytest.mark.parametrize("spool", ["out", "."])
def test_a_spool_holding_the_output_folder_is_one_line(tmp_path, spool):
    """(A sub-folder of the output folder is fine: <output>/spool is the default.)"""
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"source:\n  scp:\n    spool_dir: {tmp_path / spool}\n")
    line = _one_error_line(_serve("-o", str(tmp_path / "out"), "--listen", str(free_port()), "-c", str(cfg)))
    assert "source.scp.spool_dir" in line and "holds -o/--output" in line


def test_serve_without_a_source_is_one_line(tmp_path):
    line = _one_error_line(_serve("-o", str(tmp_path / "out")))
    assert "serve needs a source" in line


@pytest.mark.slow
def test_serve_with_the_reporting_pool_writes_the_reports_run_writes_byte_for_byte(tmp_path):
    """Every format (SC too) rendered in a worker process equals `burnscope run`'s in-graph rendering
    (SOURCE_DATE_EPOCH fixed; tools/compare_reports.py)."""
    import importlib.util
    import os

    from fixtures import REPO, SAMPLE_DATA

    spec = importlib.util.spec_from_file_location("compare_reports", REPO / "tools" / "compare_reports.py")
    compare = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(compare)
    incoming = tmp_path / "in"
    shutil.copytree(SAMPLE_DATA, incoming, ignore=shutil.ignore_patterns("*.py", "*.md", "*.txt"))
    formats = "report:\n  formats: [json, txt, sr, pdf, pdf_dcm, fhir, sc]\n"
    cfg = tmp_path / "run.yaml"
    cfg.write_text("inference:\n  model_config: biomedclip-tiny\n" + formats)
    env = dict(os.environ, SOURCE_DATE_EPOCH="1764633600", BURNSCOPE_DEVICE="cpu")
    run = subprocess.run([sys.executable, "-m", "burnscope.applications.cli", "run", "burn-triage", "-i", str(incoming),
                          "-o", str(tmp_path / "run"), "-c", str(cfg), "-q"], capture_output=True, text=True, env=env,
                         timeout=600)
    assert run.returncode == 0, run.stderr
    os.environ["SOURCE_DATE_EPOCH"] = "1764633600"
    try:
        proc = start_serve(tmp_path, formats + "reporting:\n  workers: 1\nsource:\n  watch:\n    settle_seconds: 0.5\n",
                           "-o", str(tmp_path / "serve"), "--watch", str(incoming), "--stop-after-idle", "5")
    finally:
        del os.environ["SOURCE_DATE_EPOCH"]
    assert proc.wait(timeout=600) == 0, (tmp_path / "serve.log").read_text()[-3000:]
    assert compare.compare(tmp_path / "run", tmp_path / "serve") == []
    assert len(list((tmp_path / "serve").rglob("*.pdf.dcm"))) >= 9


def test_a_corrupt_journal_is_one_line_and_left_untouched(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "journal.sqlite").write_bytes(b"\x00garbage" * 512)
    line = _one_error_line(_serve("-o", str(out), "--listen", str(free_port())))
    assert "journal" in line and "not a readable SQLite database" in line
    assert (out / "journal.sqlite").read_bytes() == b"\x00garbage" * 512
