"""Crash-isolated decoding: a codec that panics, segfaults, aborts or spins costs one file.

The misbehaving codecs are the test-only pydicom plugins of ``tests/fixtures/crash_codecs.py``;
they are registered in the decode workers (``worker_init``) or, for the CLI runs, in every
process of the command (``tests/fixtures/crash_site`` on ``PYTHONPATH``).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from fixtures import crash_codecs
from fixtures.dicom_helpers import SAMPLE

from burnscope.operators.dicom_loader.core import REASONS, DicomLoader

VALID = [SAMPLE / "study-001" / "IMG-0001.dcm", SAMPLE / "study-001" / "IMG-0002.dcm",
         SAMPLE / "study-002" / "IMG-0002.dcm"]
EXPECTED = {"PANIC": "decoder_crashed", "SEGV": "decoder_crashed", "ABORT": "decoder_crashed",
            "SPIN": "decode_timeout"}
CRASH_SITE = Path(crash_codecs.__file__).parent / "crash_site"


def _folder(tmp_path: Path, *modes: str) -> Path:
    """Three valid images and one crash file per mode, the crash files in the middle."""
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(VALID[0], folder / "a-valid.dcm")
    for mode in modes:
        crash_codecs.write_crash_file(folder / f"b-{mode.lower()}.dcm", mode)
    shutil.copy(VALID[1], folder / "c-valid.dcm")
    shutil.copy(VALID[2], folder / "d-valid.dcm")
    return folder


def test_new_reasons_are_documented():
    assert {"decoder_crashed", "decode_timeout", "decode_failed"} <= set(REASONS)


@pytest.mark.parametrize("mode", sorted(EXPECTED))
def test_a_crashing_codec_costs_one_file_and_its_worker(tmp_path, mode, caplog, capfd):
    folder = _folder(tmp_path, mode)
    with caplog.at_level(logging.DEBUG), DicomLoader(
        workers=2, worker_init=crash_codecs.register, decode_timeout_s=3
    ) as loader:
        results = list(loader.iter_file_results(loader.scan(folder), folder))
        pool = loader.decode_pool
        assert [r.path.name for r in results] == ["a-valid.dcm", f"b-{mode.lower()}.dcm", "c-valid.dcm", "d-valid.dcm"]
        assert [len(r.images) for r in results] == [1, 0, 1, 1]
        error = results[1].error
        assert error is not None and error.reason == EXPECTED[mode], error
        assert "\n" not in error.message
        if mode in ("SEGV", "ABORT"):
            assert {"SEGV": "SIGSEGV", "ABORT": "SIGABRT"}[mode] in error.message
            assert pool.crashed == 1 and pool.started == 3  # the dead worker was replaced
        if mode == "SPIN":
            assert pool.timed_out == 1 and pool.started == 3
        if mode == "PANIC":  # caught inside the worker (a BaseException): the worker lives on
            assert pool.crashed == 0 and pool.started == 2
        # the pool still decodes after the crash
        started = pool.started
        again = loader.load_file_result(folder / "a-valid.dcm")
        assert again.error is None and again.images[0].pixels.shape == (288, 384, 3)
        assert pool.started == started and loader.decode_pool is pool  # the same workers went on
    for record in results[0].images + results[2].images:
        assert record.pixels.dtype == np.uint8 and record.pixels.ndim == 3
    lines = [r for r in caplog.records if EXPECTED[mode] in r.getMessage()]
    assert len(lines) == 1  # one line per failed file
    assert all(r.exc_info is None for r in caplog.records)
    out, err = capfd.readouterr()
    assert "Traceback" not in out + err and "panicked" not in out + err
    assert "CRASH^TEST" not in caplog.text  # no patient data in the log


def test_in_process_decoding_catches_a_panic_and_logs_no_traceback(tmp_path, caplog, capfd):
    crash_codecs.register()  # in this process: the in-process path is under test
    panic = crash_codecs.write_crash_file(tmp_path / "panic.dcm", "PANIC")
    refused = crash_codecs.write_crash_file(tmp_path / "raise.dcm", "RAISE")
    loader = DicomLoader(isolate=False, workers=1)
    with caplog.at_level(logging.DEBUG):
        a = loader.load_file_result(panic)
        b = loader.load_file_result(refused)
    assert a.error.reason == "decoder_crashed" and "PanicException" in a.error.message
    assert b.error.reason == "decode_failed" and "\n" not in b.error.message
    # pydicom logs every failing plugin with a traceback; the loader's filter keeps them out
    assert all(r.exc_info is None and r.exc_text is None for r in caplog.records)
    assert not [r for r in caplog.records if r.name.startswith("pydicom") and r.levelno >= logging.WARNING]
    assert "Traceback" not in capfd.readouterr().err


def test_results_keep_input_order_with_many_workers(tmp_path):
    files = []
    for i in range(24):
        target = tmp_path / f"{i:02d}.dcm"
        if i % 7 == 3:
            crash_codecs.write_crash_file(target, "SEGV")
        else:
            shutil.copy(VALID[i % 3], target)
        files.append(target)
    with DicomLoader(workers=3, worker_init=crash_codecs.register) as loader:
        results = list(loader.iter_file_results(files, tmp_path))
    assert [r.path for r in results] == files
    assert [r.error.reason if r.error else "ok" for r in results] == [
        "decoder_crashed" if i % 7 == 3 else "ok" for i in range(24)
    ]


def test_workers_whose_memory_grew_are_replaced(tmp_path):
    from burnscope.operators.dicom_loader.isolation import DecodePool

    inner = DicomLoader(isolate=False, workers=1)
    with DecodePool(inner, workers=2, recycle_rss_mb=1) as pool:  # every worker is past 1 MiB
        results = list(pool.map([(p, None) for p in VALID * 2]))
        assert [len(r.images) for r in results] == [1] * 6
        assert pool.recycled >= 2 and pool.started == 2 + pool.recycled and pool.crashed == 0


def test_large_pixels_come_back_through_shared_memory_unchanged(tmp_path):
    from pydicom import dcmread

    from burnscope.operators.dicom_loader import isolation

    big = tmp_path / "big.dcm"
    ds = dcmread(VALID[0])
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 255, (1512, 2016, 3), dtype=np.uint8)
    ds.Rows, ds.Columns, ds.PixelData = 1512, 2016, pixels.tobytes()
    ds.save_as(big)
    before = set(Path("/dev/shm").glob(isolation._SHM_PREFIX + "*"))
    with DicomLoader(workers=1) as loader:
        result = loader.load_file_result(big)
    assert result.error is None
    assert np.array_equal(result.images[0].pixels, pixels)
    assert set(Path("/dev/shm").glob(isolation._SHM_PREFIX + "*")) == before  # nothing left behind


def test_worker_memory_limit_turns_a_huge_allocation_into_an_error(tmp_path):
    big = tmp_path / "big.dcm"
    from pydicom import dcmread

    ds = dcmread(VALID[0])
    ds.Rows, ds.Columns = 6000, 6000
    ds.PixelData = bytes(6000 * 6000 * 3)
    ds.save_as(big)
    with DicomLoader(workers=1, worker_memory_mb=300) as loader:
        result = loader.load_file_result(big)
        assert result.error is not None and result.error.reason == "decoder_crashed", result.error
        assert loader.load_file_result(VALID[0]).error is None  # the pool goes on


def test_a_script_without_a_main_guard_gets_a_clear_error(tmp_path):
    script = tmp_path / "unguarded.py"
    script.write_text(
        "from burnscope.operators.dicom_loader.core import DicomLoader\n"
        f"print(DicomLoader(workers=1).load({str(VALID[0])!r}))\n"
    )
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert "if __name__ == '__main__':" in proc.stderr


# ------------------------------------------------------------------------------ the CLI


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(CRASH_SITE), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["SOURCE_DATE_EPOCH"] = "1764633600"
    return env


def _burnscope(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("burnscope")
    return subprocess.run([str(exe), *args], capture_output=True, text=True, env=_env(), timeout=timeout)


@pytest.mark.parametrize("mode", ["PANIC", "SEGV", "SPIN"])
def test_burn_triage_run_goes_on_past_a_crashing_codec(tmp_path, mode):
    folder = _folder(tmp_path, mode)
    config = tmp_path / "tiny.yaml"
    config.write_text("inference:\n  model_config: biomedclip-tiny\nsource:\n  decode_timeout_s: 3\n")
    out = tmp_path / "out"
    proc = _burnscope("run", "burn-triage", "-i", str(folder), "-o", str(out), "-c", str(config))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["images"] == 3 and summary["errors"] == 1, summary
    text = proc.stdout + proc.stderr
    assert sum(EXPECTED[mode] in line for line in proc.stderr.splitlines()) == 1, proc.stderr  # one line
    assert "Traceback" not in text and "panicked" not in text
    assert "CRASH^TEST" not in text
    assert summary["reports"] == 3 and summary["error_reasons"] == {EXPECTED[mode]: 1}
    (record,) = [json.loads(line) for line in (out / "errors.jsonl").read_text().splitlines()]
    assert record["reason"] == EXPECTED[mode] and record["source"].endswith(f"b-{mode.lower()}.dcm")


@pytest.mark.slow
def test_inspect_json_stays_valid_for_thousands_of_damaged_files(tmp_path):
    folder = tmp_path / "damaged"
    folder.mkdir()
    rng = np.random.default_rng(1)
    sources = [p.read_bytes() for p in VALID]
    n = 3000
    for i in range(n):
        target = folder / f"{i:05d}.dcm"
        if i % 500 == 7:
            crash_codecs.write_crash_file(target, ("PANIC", "SEGV", "ABORT")[(i // 500) % 3])
            continue
        data = bytearray(sources[i % 3])
        if i % 3 == 0:
            data = data[: int(rng.integers(0, len(data)))]  # cut short
        else:
            for at in rng.integers(132, len(data), 8):  # flipped bytes
                data[at] = int(rng.integers(0, 256))
        target.write_bytes(bytes(data))
    for i in range(3):
        shutil.copy(VALID[i], folder / f"valid-{i}.dcm")
    proc = _burnscope("inspect", "--json", "--workers", "2", str(folder))
    doc = json.loads(proc.stdout)  # valid JSON, whatever the files did to the decoders
    assert len(doc["items"]) >= n + 3 and doc["images"] >= 3
    reasons = {item["reason"] for item in doc["items"] if item["decision"] == "error"}
    assert reasons <= set(REASONS) and "decoder_crashed" in reasons
    assert "Traceback" not in proc.stderr and "panicked" not in proc.stderr
    assert proc.returncode == 0
