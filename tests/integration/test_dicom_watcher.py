"""Folder watcher: a file written slowly in pieces is picked up only once it is complete."""

from __future__ import annotations

import os
import time

from fixtures.dicom_helpers import SAMPLE, run_source_graph

from burnscope.operators.dicom_loader.core import DicomLoader
from burnscope.operators.dicom_loader.watcher import FolderWatcher

SOURCE = SAMPLE / "study-001" / "IMG-0001.dcm"


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_file_written_in_pieces_is_reported_once_complete(tmp_path):
    clock = FakeClock()
    watcher = FolderWatcher(tmp_path, settle_seconds=1.0, clock=clock)
    data = SOURCE.read_bytes()
    target = tmp_path / "incoming" / "IMG.dcm"
    target.parent.mkdir()
    pieces = [data[i : i + 50_000] for i in range(0, len(data), 50_000)]
    with open(target, "wb") as fh:
        for n, piece in enumerate(pieces):
            fh.write(piece)
            fh.flush()
            os.utime(target, ns=(n * 10**9, n * 10**9))  # each piece changes the mtime
            clock.now += 5.0  # far longer than settle_seconds between polls...
            assert watcher.poll() == []  # ...yet the growing file is never reported
    clock.now += 0.5
    assert watcher.poll() == []  # stable for 0.5 s only
    clock.now += 1.0
    assert watcher.poll() == [target]
    assert watcher.poll() == []  # reported once
    images, errors = DicomLoader(workers=1).load(target)
    assert len(images) == 1 and not errors


def test_temporary_names_are_ignored_until_renamed(tmp_path):
    clock = FakeClock()
    watcher = FolderWatcher(tmp_path, settle_seconds=0.5, clock=clock)
    part = tmp_path / "IMG.dcm.part"
    part.write_bytes(SOURCE.read_bytes())
    for _ in range(3):
        clock.now += 1.0
        assert watcher.poll() == []
    final = tmp_path / "IMG.dcm"
    part.rename(final)
    assert watcher.poll() == []
    clock.now += 1.0
    assert watcher.poll() == [final]


def test_watch_source_operator_in_a_graph(tmp_path):
    from burnscope.operators.dicom_loader.operator import DicomWatchSourceOp

    def watch(app):
        return DicomWatchSourceOp(
            app, name="watch", watch_path=str(tmp_path), poll_interval=0.05, settle_seconds=0.5,
            max_files=2, workers=1,
        )

    def writer():
        time.sleep(0.2)
        data = SOURCE.read_bytes()
        with open(tmp_path / "slow.dcm", "wb") as fh:  # written slowly, in pieces
            for i in range(0, len(data), 40_000):
                fh.write(data[i : i + 40_000])
                fh.flush()
                time.sleep(0.05)
        (tmp_path / "notes.txt").write_text("not an image")

    app = run_source_graph(watch, background=writer)
    assert len(app.sink.images) == 1 and app.sink.images[0].pixels.shape == (288, 384, 3)
    assert [e.reason for e in app.sink.errors] == ["not_dicom"]
