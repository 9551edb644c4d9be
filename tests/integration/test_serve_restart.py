"""`burnscope serve` keeps the promise of `run --watch/--listen` across restarts, with real
processes: killed with SIGKILL while a modality sends, every acknowledged image is reported
exactly once after the restart; a watched folder whose files were reported is not reported
again; after a forced stop (second SIGTERM) the next start reports what was pending."""

from __future__ import annotations

import signal
import time

import pytest
from fixtures.cli_process import RunProcess, reported_uids, reports_by_image, send_and_kill_midway, summary
from fixtures.orthanc_local import free_port
from fixtures.service import TINY, copies, send, wait_listening

from burnscope.operators.dicom_loader.journal import Journal

pytestmark = [pytest.mark.network]

# PDFs rendered in one worker: images stay queued behind the reports while the modality sends
SLOW = TINY + "report:\n  formats: [json, txt, pdf]\n  study_rollup: false\nreporting:\n  workers: 1\n" \
              "batching:\n  max_batch: 4\n  max_delay_ms: 5\nsource:\n  watch:\n    settle_seconds: 0.3\n"


def _serve(tmp_path, name: str, *args: str) -> RunProcess:
    cfg = tmp_path / "serve.yaml"
    cfg.write_text(SLOW)
    return RunProcess(["serve", "burn-triage", "-c", str(cfg), *args], tmp_path / f"{name}.log",
                      env={"BURNSCOPE_DEVICE": "cpu"})


def _exactly_once(out) -> dict:
    found = reports_by_image(out)
    assert all(len(paths) == 1 for paths in found.values()), {k: v for k, v in found.items() if len(v) > 1}
    assert not list(out.rglob("*_r2.*"))
    return found


@pytest.mark.slow
def test_a_killed_serve_reports_every_acknowledged_image_exactly_once_after_restart(tmp_path):
    out, port = tmp_path / "out", free_port()
    first = _serve(tmp_path, "first", "-o", str(out), "--listen", str(port))
    wait_listening(first.proc, port)
    acknowledged = send_and_kill_midway(port, copies(24), first, after=16)  # SIGKILL while the SCU sends
    assert len(acknowledged) == 16

    # every acknowledged instance is in the spool under <output> and in the journal
    assert {p.stem for p in (out / "spool").glob("*.dcm")} == acknowledged
    assert (out / "spool").stat().st_mode & 0o777 == 0o700
    with Journal(out / "journal.sqlite") as journal:
        pending = {e.sop_instance_uid for e in journal.pending()}
        counts = journal.counts()
    assert counts["pending"] + counts["done"] == 16
    assert pending, "the kill came after everything was reported: nothing left to prove"
    before = reported_uids(out)
    assert before | pending == acknowledged

    second = _serve(tmp_path, "second", "-o", str(out), "--listen", str(free_port()), "--stop-after-idle", "3")
    assert second.wait() == 0, second.output()[-3000:]
    assert reported_uids(out) == acknowledged  # every acknowledged image has a report ...
    _exactly_once(out)  # ... one
    acc = summary(out)["accounting"]
    assert acc["lost"] == 0 and acc["pending"] == 0 and acc["reported"] >= len(pending)
    with Journal(out / "journal.sqlite") as journal:
        assert journal.counts() == {"pending": 0, "done": 16}


@pytest.mark.slow
def test_a_restarted_watching_serve_reports_nothing_twice(tmp_path):
    out, watched = tmp_path / "out", tmp_path / "incoming"
    watched.mkdir()
    first_files = copies(4)
    for ds in first_files:
        ds.save_as(watched / f"{ds.SOPInstanceUID}.dcm", enforce_file_format=True)
    first = _serve(tmp_path, "first", "-o", str(out), "--watch", str(watched), "--stop-after-idle", "3")
    assert first.wait() == 0, first.output()[-3000:]
    assert summary(out)["accounting"]["reported"] == 4

    later = copies(2)  # arrived while the service was down
    for ds in later:
        ds.save_as(watched / f"{ds.SOPInstanceUID}.dcm", enforce_file_format=True)
    again = _serve(tmp_path, "again", "-o", str(out), "--watch", str(watched), "--stop-after-idle", "3")
    assert again.wait() == 0, again.output()[-3000:]
    acc = summary(out)["accounting"]
    assert acc["accepted"] == acc["reported"] == 2  # only the new ones were read
    assert reported_uids(out) == {ds.SOPInstanceUID for ds in first_files + later}
    _exactly_once(out)
    with Journal(out / "journal.sqlite") as journal:
        assert journal.counts() == {"pending": 0, "done": 6}


@pytest.mark.slow
def test_after_a_forced_stop_the_next_start_reports_what_was_pending(tmp_path):
    out, port = tmp_path / "out", free_port()
    first = _serve(tmp_path, "first", "-o", str(out), "--listen", str(port))
    wait_listening(first.proc, port)
    sent = copies(20)
    assert send(port, sent) == [0] * 20
    first.signal(signal.SIGTERM)
    time.sleep(0.3)
    first.signal(signal.SIGTERM)
    assert first.wait(timeout=60) == 3, first.output()[-3000:]
    forced = summary(out)
    assert forced["outcome"] == "forced" and forced["journal"]["pending"] > 0
    assert len(forced["pending"]) == forced["accounting"]["pending"]
    with Journal(out / "journal.sqlite") as journal:
        assert journal.counts()["pending"] == forced["journal"]["pending"]
    # every pending file is listed (spool files are named by SOP Instance UID), the in-flight images among them
    listed = {name.removesuffix(".dcm") for name in forced["journal"]["pending_files"]}
    assert len(listed) == forced["journal"]["pending"] and set(forced["pending"]) <= listed

    again = _serve(tmp_path, "again", "-o", str(out), "--listen", str(free_port()), "--stop-after-idle", "3")
    assert again.wait() == 0, again.output()[-3000:]
    assert reported_uids(out) == {ds.SOPInstanceUID for ds in sent}
    _exactly_once(out)
    assert summary(out)["journal"]["pending"] == 0
