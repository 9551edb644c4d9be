"""Nothing lost, tried with real processes: a ``burnscope run --listen`` killed with SIGKILL while
a modality sends and then restarted, SIGTERM during a folder run, Ctrl-C during ``--watch``, an
output disk that fills up (a real tmpfs), a read-only output folder (a real read-only mount), an
outbox locked by another process or corrupt."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from fixtures import REPO
from fixtures.cli_process import (
    CLI, RunProcess, reported_uids, reports_by_image, send_and_kill_midway, summary, tiny_config,
)
from fixtures.dicom_helpers import SAMPLE, free_port

from burnscope.benchmarks.workload import copies, sample_images
from burnscope.operators.dicom_loader.journal import Journal

ALL_SUFFIXES = (".json", ".txt", ".pdf", ".sr.dcm", ".pdf.dcm", ".fhir.json")


def _uid(path: Path) -> str:
    import pydicom

    return str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID)


def _frames(paths) -> int:
    import pydicom

    return sum(int(getattr(pydicom.dcmread(p, stop_before_pixels=True), "NumberOfFrames", 1) or 1) for p in paths)


def _assert_complete_bundles(out: Path) -> None:
    """Every image report in ``out`` has all of its artefacts: nothing half-written."""
    for stem_json in reports_by_image(out).values():
        for path in stem_json:
            stem = str(path)[: -len(".json")]
            missing = [s for s in ALL_SUFFIXES if not Path(stem + s).is_file()]
            assert not missing, f"{path.name}: missing {missing}"


def _can_mount() -> bool:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return False
    return subprocess.run(["unshare", "-m", "true"], capture_output=True).returncode == 0


needs_mount = pytest.mark.skipif(not _can_mount(), reason="needs root and unshare -m (private mount namespace)")


@pytest.mark.slow
@pytest.mark.network
def test_listening_is_announced_once_the_scp_accepts_associations(tmp_path):
    """A modality (or a script) that connects as soon as "listening on" is printed is accepted
    at the first attempt: the line comes from the source's start, not before the model loads."""
    import pydicom
    from pynetdicom import AE

    image = pydicom.dcmread(sample_images(SAMPLE)[0])
    port = free_port()
    run = RunProcess(["run", "burn-triage", "--listen", str(port), "-o", str(tmp_path / "out"), "-c",
                      str(tiny_config(tmp_path)), "--stop-after-idle", "3", "-q"], tmp_path / "listen.log")
    try:
        run.wait_for("listening on")
        ae = AE(ae_title="MODALITY")
        ae.add_requested_context(image.SOPClassUID, image.file_meta.TransferSyntaxUID)
        assoc = ae.associate("127.0.0.1", port, ae_title="BURNSCOPE")  # once, no retry
        assert assoc.is_established, run.output()[-2000:]
        assert assoc.send_c_store(image).Status == 0x0000
        assoc.release()
        assert run.wait(timeout=120) == 0, run.output()[-3000:]
        assert summary(tmp_path / "out")["accounting"]["reported"] >= 1
    finally:
        run.kill()


@pytest.mark.slow
@pytest.mark.network
def test_a_killed_listen_run_reports_every_acknowledged_image_exactly_once_after_restart(tmp_path):
    files = copies(sample_images(SAMPLE), 30, tmp_path / "modality")
    sent = {_uid(p) for p in files}
    out, config = tmp_path / "out", tiny_config(tmp_path)
    port = free_port()
    run = RunProcess(["run", "burn-triage", "--listen", str(port), "-o", str(out), "-c", str(config), "-q"],
                     tmp_path / "first.log")
    run.wait_for("listening on")
    acknowledged = send_and_kill_midway(port, files, run, after=20)  # SIGKILL while the SCU sends
    assert len(acknowledged) == 20 and acknowledged < sent
    sent = acknowledged  # what the modality may forget: the rest it will send again

    # every acknowledged instance is on disk and in the journal; some were not reported yet
    with Journal(out / "journal.sqlite") as journal:
        pending = {e.sop_instance_uid for e in journal.pending()}
        counts = journal.counts()
    assert counts["pending"] + counts["done"] == len(acknowledged)
    assert pending, "the kill came after everything was reported: nothing left to prove"
    assert {_uid(p) for p in (out / "spool").glob("*.dcm")} == acknowledged
    before = reported_uids(out)

    restart = RunProcess(["run", "burn-triage", "--listen", str(free_port()), "-o", str(out), "-c", str(config),
                          "--stop-after-idle", "3", "-q"], tmp_path / "second.log")
    assert restart.wait() == 0, restart.output()[-3000:]
    after = reports_by_image(out)
    assert reported_uids(out) == sent  # every acknowledged image has a report ...
    assert all(len(paths) == 1 for paths in after.values()), {u: p for u, p in after.items() if len(p) > 1}  # ... one
    assert not list(out.rglob("*_r2.*"))
    _assert_complete_bundles(out)
    second = summary(out)
    assert second["accounting"]["lost"] == 0 and second["accounting"]["reported"] >= len(pending)
    assert before | pending >= sent  # what the second run took up is what the first had not finished
    with Journal(out / "journal.sqlite") as journal:
        assert journal.counts() == {"pending": 0, "done": len(acknowledged)}


@pytest.mark.slow
def test_sigterm_during_a_folder_run_finishes_what_is_in_flight_and_says_so(tmp_path):
    copies(sample_images(SAMPLE), 60, tmp_path / "in")
    out = tmp_path / "out"
    run = RunProcess(["run", "burn-triage", "-i", str(tmp_path / "in"), "-o", str(out), "-c", str(tiny_config(tmp_path)),
                      "-q"], tmp_path / "run.log")
    deadline = time.monotonic() + 240
    while not list(out.rglob("copy-*.pdf")) and time.monotonic() < deadline:
        time.sleep(0.2)
    run.signal(signal.SIGTERM)
    assert run.wait() == 143, run.output()[-3000:]
    result = summary(out)
    acc, info = result["accounting"], result["run"]
    assert info["signal"] == "SIGTERM" and info["outcome"] == "interrupted" and result["exit"]["code"] == 143
    assert acc["lost"] == 0 and acc["pending"] == 0 and acc["balanced"]
    assert 0 < acc["reported"] and info["files_not_started"] > 0 and result["files"] == 60
    assert acc["accepted"] >= 60 - info["files_not_started"]  # frames of the files read
    assert len(reports_by_image(out)) == acc["reported"]
    _assert_complete_bundles(out)
    assert "exit 143: stopped by SIGTERM" in run.output()


@pytest.mark.slow
def test_ctrl_c_during_watch_prints_the_summary_and_writes_summary_json(tmp_path):
    watched, out = tmp_path / "watched", tmp_path / "out"
    run = RunProcess(["run", "burn-triage", "--watch", "-i", str(watched), "-o", str(out), "-c",
                      str(tiny_config(tmp_path, "  watch:\n    poll_interval: 0.1\n    settle_seconds: 0.2\n")), "-q"],
                     tmp_path / "run.log")
    run.wait_for("listening on")
    images = _frames(copies(sample_images(SAMPLE), 6, watched))
    deadline = time.monotonic() + 120
    while len(reports_by_image(out)) < images and time.monotonic() < deadline:
        time.sleep(0.2)
    run.signal(signal.SIGINT)
    assert run.wait() == 130, run.output()[-3000:]
    result = summary(out)
    assert result["run"]["signal"] == "SIGINT" and result["accounting"]["reported"] == images
    assert result["accounting"]["lost"] == 0 and "burn-triage summary" in run.output()
    with Journal(out / "journal.sqlite") as journal:
        assert journal.counts() == {"pending": 0, "done": 6}

    # a restart finds nothing to do again, and processes what arrived while it was down
    more = _frames(copies(sample_images(SAMPLE), 2, watched, start=100))
    again = RunProcess(["run", "burn-triage", "--watch", "-i", str(watched), "-o", str(out), "-c",
                        str(tmp_path / "tiny.yaml"), "--stop-after-idle", "3", "-q"], tmp_path / "again.log")
    assert again.wait() == 0, again.output()[-3000:]
    assert summary(out)["accounting"]["reported"] == more and len(reports_by_image(out)) == images + more


def _in_private_mount(tmp_path: Path, mount: str, cli_args: list[str]) -> tuple[int, dict, str]:
    """Run the CLI inside ``unshare -m`` after ``mount`` (a shell line); returns its exit code,
    its summary.json (copied out of the private mount) and its output."""
    host = tmp_path / "host"
    host.mkdir()
    script = textwrap.dedent(f"""
        set -e
        {mount}
        set +e
        {' '.join(map(_quote, CLI + cli_args))} > {host}/run.log 2>&1
        echo $? > {host}/rc
        cp $OUT/summary.json {host}/ 2>/dev/null
        ls -1A $OUT > {host}/listing.txt 2>/dev/null
        find $OUT -name '*.tmp' > {host}/temporaries.txt
        exit 0
    """)
    env = {**os.environ, "OUT": str(tmp_path / "out"), "COLUMNS": "200"}
    subprocess.run(["unshare", "-m", "bash", "-c", script], env=env, check=True, timeout=600)
    found = json.loads((host / "summary.json").read_text()) if (host / "summary.json").exists() else {}
    output = (host / "run.log").read_text() + "\n--- listing ---\n" + (host / "listing.txt").read_text()
    assert (host / "temporaries.txt").read_text().strip() == "", "temporary files left behind"
    return int((host / "rc").read_text()), found, output


def _quote(arg: str) -> str:
    return "'" + str(arg).replace("'", "'\\''") + "'"


@pytest.mark.slow
@needs_mount
def test_output_disk_full_reports_are_never_half_written_and_the_run_says_so(tmp_path):
    inputs = tmp_path / "in"
    copies(sample_images(SAMPLE), 40, inputs)
    out = tmp_path / "out"
    out.mkdir()
    # 700 KiB: room for some reports (about 60 KiB a bundle), not for all
    rc, result, output = _in_private_mount(
        tmp_path, f"mount -t tmpfs -o size=700k tmpfs {out}",
        ["run", "burn-triage", "-i", str(inputs), "-o", str(out), "-c", str(tiny_config(tmp_path)), "-q"],
    )
    assert rc == 4, output[-3000:]
    acc = result["accounting"]
    assert acc["lost"] == 0 and acc["balanced"] and acc["reported"] > 0 and acc["write_failures"]
    assert acc["errors"] == len(acc["write_failures"]) and result["exit"]["reason"].endswith("could not be written or queued")
    assert "No space left on device" in output or "disk is full" in output
    assert "not written (see errors.jsonl)" in output


@pytest.mark.slow
@needs_mount
def test_a_read_only_output_folder_fails_its_reports_cleanly_and_the_rest_are_written(tmp_path):
    inputs = tmp_path / "in"
    copies(sample_images(SAMPLE), 12, inputs / "study-a")
    copies(sample_images(SAMPLE), 12, inputs / "study-b", start=100)
    out = tmp_path / "out"
    (out / "study-a").mkdir(parents=True)
    # reports mirror the input folders: study-a's go to a folder mounted read-only
    # (a share exported read-only, a remount by an administrator); root does not get past that
    read_only = f"mount --bind {out}/study-a {out}/study-a && mount -o remount,bind,ro {out}/study-a"
    rc, result, output = _in_private_mount(
        tmp_path, read_only,
        ["run", "burn-triage", "-i", str(inputs), "-o", str(out), "-c", str(tiny_config(tmp_path)), "-q"],
    )
    assert rc == 4, output[-3000:]
    acc = result["accounting"]
    assert acc["lost"] == 0 and acc["balanced"]
    assert acc["reported"] > 0 and len(acc["write_failures"]) == acc["errors"] > 0
    assert "Read-only file system" in output and "not written (see errors.jsonl)" in output
    assert list((tmp_path / "host").glob("listing.txt"))


def _cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=timeout)


def _delivery_config(tmp_path: Path) -> Path:
    return tiny_config(tmp_path, "delivery:\n  echo: false\n  destinations:\n"
                                 "    - {name: emr, kind: fhir, url: 'http://127.0.0.1:9/fhir'}\n")


def test_an_outbox_locked_by_another_process_stops_the_run_before_the_model_loads(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    outbox = out / "outbox.sqlite"
    sqlite3.connect(outbox).execute("CREATE TABLE t (x)").connection.close()
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sqlite3, sys, time
        db = sqlite3.connect({str(outbox)!r}, isolation_level=None)
        db.execute("BEGIN EXCLUSIVE")
        print("locked", flush=True)
        time.sleep(60)
    """)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        started = time.monotonic()
        proc = _cli("run", "burn-triage", "-i", str(SAMPLE), "-o", str(out), "-c", str(_delivery_config(tmp_path)))
    finally:
        holder.kill()
        holder.wait()
    assert proc.returncode == 2
    assert "is locked by another process" in proc.stderr and "Traceback" not in proc.stderr
    assert time.monotonic() - started < 60  # before the model loads
    assert outbox.read_bytes()  # untouched


def test_a_corrupt_outbox_is_a_clear_error_and_is_never_reset(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    outbox = out / "outbox.sqlite"
    garbage = b"this is not a database, but it was one once" * 100
    outbox.write_bytes(garbage)
    proc = _cli("run", "burn-triage", "-i", str(SAMPLE), "-o", str(out), "-c", str(_delivery_config(tmp_path)))
    assert proc.returncode == 2
    assert "is not a readable SQLite database" in proc.stderr and "left untouched" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert outbox.read_bytes() == garbage


def test_a_corrupt_journal_is_a_clear_error_and_is_never_reset(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "journal.sqlite").write_bytes(b"\x00garbage" * 512)
    proc = _cli("run", "burn-triage", "--watch", "-i", str(tmp_path / "w"), "-o", str(out), "-c",
                str(tiny_config(tmp_path)))
    assert proc.returncode == 2 and "journal" in proc.stderr and "not a readable SQLite database" in proc.stderr
    assert (out / "journal.sqlite").read_bytes() == b"\x00garbage" * 512


def test_reliability_doc_lists_the_exit_codes_the_runner_uses():
    from burnscope.applications.burn_triage import runner

    doc = (REPO / "docs" / "reliability.md").read_text()
    for code in (runner.EXIT_OK, runner.EXIT_NOTHING, runner.EXIT_USAGE, runner.EXIT_LOST, runner.EXIT_OUTPUT, 130, 143):
        assert f"| {code} |" in doc, code
