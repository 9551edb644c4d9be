"""Files that may hold patient data are the owner's alone: 0600 files, 0700 folders, any umask."""

from __future__ import annotations

import os
import stat

import pytest

from burnscope.common.private_files import open_private, private_dirs, write_private


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture(params=[0o022, 0o000, 0o277])
def umask(request):
    old = os.umask(request.param)
    yield request.param
    os.umask(old)


def test_created_files_and_folders_are_private_whatever_the_umask(tmp_path, umask):
    target = tmp_path / "a" / "b" / "errors.jsonl"
    with open_private(target, "a") as handle:
        handle.write("one\n")
    with open_private(target, "a") as handle:
        handle.write("two\n")
    assert target.read_text() == "one\ntwo\n"
    assert _mode(target) == 0o600
    assert _mode(tmp_path / "a") == _mode(tmp_path / "a" / "b") == 0o700
    write_private(tmp_path / "summary.json", "{}")
    assert _mode(tmp_path / "summary.json") == 0o600


def test_existing_folders_keep_their_mode_and_existing_files_become_private(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o750)
    old = shared / "report.json"
    old.write_text("x")
    old.chmod(0o644)
    private_dirs(shared / "new")
    assert _mode(shared) == 0o750 and _mode(shared / "new") == 0o700
    with open_private(old, "w") as handle:
        handle.write("y")
    assert _mode(old) == 0o600


def test_a_file_in_the_way_of_a_folder_is_an_error(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(OSError):
        private_dirs(tmp_path / "file" / "sub")
