"""The intake journal (a real SQLite file): what `run` and `serve` recover from, skip and mark."""

from __future__ import annotations

import os
import sqlite3

from burnscope.operators.dicom_loader.journal import Journal


def test_recover_skip_and_settle(tmp_path):
    a, b, gone = tmp_path / "a.dcm", tmp_path / "b.dcm", tmp_path / "gone.dcm"
    for p in (a, b, gone):
        p.write_bytes(b"x" * 10)
    with Journal(tmp_path / "journal.sqlite") as journal:
        journal.record(a, sop_instance_uid="1.2.3", stat_reason="dimse_priority_high")
        assert journal.record_file(b) and journal.record_file(gone)
        assert not journal.record_file(tmp_path / "never.dcm")
        gone.unlink()
        journal.settle(b, "reported")
        assert journal.skip(b, os.stat(b)) and not journal.skip(a, os.stat(a))
        b.write_bytes(b"rewritten")  # another file under the same name: not skipped
        assert not journal.skip(b, os.stat(b))
    with Journal(tmp_path / "journal.sqlite") as journal:  # after a restart
        (entry,) = journal.recover()
        assert (entry.path, entry.sop_instance_uid, entry.stat_reason) == (a, "1.2.3", "dimse_priority_high")
        assert journal.counts() == {"pending": 1, "done": 2}  # the missing file is done ("missing")


def test_a_journal_without_the_stat_reason_column_is_upgraded_in_place(tmp_path):
    path = tmp_path / "journal.sqlite"
    with sqlite3.connect(path) as db:  # the schema before the column existed
        db.execute("CREATE TABLE files (path TEXT PRIMARY KEY, size INTEGER NOT NULL DEFAULT -1, mtime_ns INTEGER"
                   " NOT NULL DEFAULT -1, sop_instance_uid TEXT NOT NULL DEFAULT '', state TEXT NOT NULL, outcome"
                   " TEXT NOT NULL DEFAULT '', recorded_at REAL NOT NULL, done_at REAL)")
        db.execute("INSERT INTO files(path, state, recorded_at) VALUES (?, 'pending', 1.0)", (str(tmp_path / "x.dcm"),))
    (tmp_path / "x.dcm").write_bytes(b"x")
    with Journal(path) as journal:
        assert [(e.path.name, e.stat_reason) for e in journal.recover()] == [("x.dcm", "")]


def test_a_failed_mark_is_counted_not_raised(tmp_path):
    journal = Journal(tmp_path / "journal.sqlite")
    journal.close()
    journal.settle(tmp_path / "a.dcm", "reported")
    assert journal.failures == 1
