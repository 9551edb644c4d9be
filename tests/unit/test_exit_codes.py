"""The exit status of a run follows from its summary: lost beats interrupted beats output
failures beats nothing processed (docs/reliability.md)."""

from __future__ import annotations

from burnscope.applications.burn_triage.runner import exit_code


def _summary(reports=10, run=None, **accounting):
    acc = {"accepted": 12, "reported": 10, "errors": 2, "skipped": 0, "lost": 0, "pending": 0, "balanced": True}
    acc.update(accounting)
    return {"reports": reports, "accounting": acc, "run": {"outcome": "drained", "signal": None, **(run or {})}}


def test_a_clean_run_and_bad_input_files_are_0():
    assert exit_code(_summary()) == (0, "ok")


def test_lost_images_are_3_and_win_over_everything():
    code, reason = exit_code(_summary(lost=2, run={"signal": "SIGTERM"}, write_failures=[{"label": "x"}]))
    assert (code, reason) == (3, "2 image(s) lost")
    assert exit_code(_summary(duplicates=1))[0] == 3


def test_a_signal_is_128_plus_its_number_with_what_is_pending():
    assert exit_code(_summary(run={"signal": "SIGINT"})) == (130, "stopped by SIGINT")
    assert exit_code(_summary(pending=3, run={"signal": "SIGTERM"})) == (143, "stopped by SIGTERM, 3 pending")


def test_unwritten_or_unqueued_reports_are_4():
    assert exit_code(_summary(write_failures=[{"label": "a"}, {"label": "b"}]))[0] == 4
    assert exit_code(_summary(not_queued=1))[0] == 4
    assert exit_code(_summary(error_record_write_failures=1))[0] == 4


def test_nothing_processed_is_1():
    assert exit_code(_summary(reports=0, reported=0))[0] == 1
