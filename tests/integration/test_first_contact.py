"""What a new user hits first: every mistake is one line and a non-zero exit, found before the
model loads (the loader is replaced by one that fails the test if it is ever called)."""

from __future__ import annotations

import subprocess

import pytest
from typer.testing import CliRunner

from burnscope.applications.cli import app as cli_app
from fixtures import SAMPLE_DATA

runner = CliRunner()


@pytest.fixture
def no_model_load(monkeypatch):
    from burnscope.applications.burn_triage import app as triage_app

    def refuse(*_args, **_kwargs):
        raise AssertionError("the model was loaded before the mistake was reported")

    monkeypatch.setattr(triage_app, "build_components", refuse)


def _run(*args: str):
    return runner.invoke(cli_app, ["run", "burn-triage", *args])


def _one_line_error(result, *needles: str) -> None:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert errors, result.output
    for needle in needles:
        assert needle in result.output, result.output


@pytest.mark.parametrize(
    ("options", "needles"),
    [
        (["--precision", "fp8"], ["does not run fp8 on the CPU"]),
        (["--precision", "fp16", "--backend", "torch"], ["torch does not run fp16 on the CPU (fp16 needs CUDA)"]),
        (["--device", "tpu"], ["unknown device 'tpu'"]),
        (["--backend", "tensorrt"], ["TensorRT is not installed"]),
        (["--batch-size", "0"], ["source.batch_size"]),
        (["-m", "/nonexistent/weights"], ["model: --model=/nonexistent/weights: no BiomedCLIP weights there"]),
    ],
)
def test_bad_options_fail_before_the_model_loads(tmp_path, no_model_load, options, needles):
    _one_line_error(_run("-i", str(SAMPLE_DATA), "-o", str(tmp_path / "out"), *options), *needles)


def test_a_folder_of_ignored_files_fails_fast(tmp_path, no_model_load):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "case.json").write_text("{}")
    (folder / "README.md").write_text("notes")
    _one_line_error(_run("-i", str(folder), "-o", str(tmp_path / "out")), "no file to read", "*.json", "*.md")


def test_bad_config_files_fail_fast(tmp_path, no_model_load):
    bad = tmp_path / "site.yaml"
    bad.write_text("sourse:\n  batch_size: 4\n")
    _one_line_error(_run("-i", str(SAMPLE_DATA), "-o", str(tmp_path / "o"), "-c", str(bad)), "did you mean source?")
    bad.write_text("source:\n  batch_sise: 4\n")
    _one_line_error(_run("-i", str(SAMPLE_DATA), "-o", str(tmp_path / "o"), "-c", str(bad)), "did you mean batch_size?")
    bad.write_text("source: [unclosed\n")
    _one_line_error(_run("-i", str(SAMPLE_DATA), "-o", str(tmp_path / "o"), "-c", str(bad)), "malformed YAML at line")


def test_an_output_path_that_is_a_file_fails_fast(tmp_path, no_model_load):
    (tmp_path / "taken").write_text("x")
    _one_line_error(_run("-i", str(SAMPLE_DATA), "-o", str(tmp_path / "taken")), "is not a folder")


def test_a_read_only_output_fails_fast(tmp_path, no_model_load):
    target = tmp_path / "ro"
    target.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,ro", "tmpfs", str(target)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip("cannot mount a read-only file system here (needs root)")
    try:
        _one_line_error(_run("-i", str(SAMPLE_DATA), "-o", str(target / "reports")), "not writable", "read-only")
    finally:
        subprocess.run(["umount", str(target)], check=True)


def test_corrupt_weights_are_one_line_and_never_unpickled(tmp_path):
    weights = tmp_path / "model"
    weights.mkdir()
    (weights / "open_clip_pytorch_model.bin").write_bytes(b"\x80\x04not a checkpoint at all")
    (weights / "vocab.txt").write_text("[PAD]\n")
    result = _run("-i", str(SAMPLE_DATA), "-o", str(tmp_path / "out"), "-m", str(weights))
    _one_line_error(result, "not a readable PyTorch weights file", "never unpickles")
    assert "weights_only" not in result.output  # torch's advice to unpickle must never be passed on
