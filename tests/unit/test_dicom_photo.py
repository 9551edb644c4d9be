"""JPEG/PNG photographs wrapped into VL Photographic Image DICOM keep their pixels."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest
import typer
from PIL import Image
from typer.testing import CliRunner

from burnscope.applications.cli import cmd_dicom
from burnscope.operators.dicom_loader.core import DicomLoader
from burnscope.operators.dicom_loader.photo import strip_jpeg_app_segments, wrap_photo

META = {"patient_name": "DOE^JANE", "patient_id": "P-77", "birth_date": "1980-02-03", "sex": "F",
        "body_site": "forearm", "laterality": "L", "accession_number": "A1"}


def _photo(rows: int = 48, cols: int = 64) -> np.ndarray:
    yy, xx = np.mgrid[0:rows, 0:cols]
    rgb = np.stack([(xx * 4) % 256, (yy * 5) % 256, ((xx + yy) * 3) % 256], axis=-1)
    return rgb.astype(np.uint8)


def _dciodvfy_errors(path: Path) -> list[str]:
    out = subprocess.run(["dciodvfy", "-new", str(path)], capture_output=True, text=True)
    return [line for line in (out.stdout + out.stderr).splitlines() if line.startswith("Error")]


def test_png_is_stored_losslessly(tmp_path):
    rgb = _photo()
    Image.fromarray(rgb).save(tmp_path / "wound.png")
    ds = wrap_photo(tmp_path / "wound.png", tmp_path / "wound.dcm", META)
    back = pydicom.dcmread(tmp_path / "wound.dcm")
    np.testing.assert_array_equal(back.pixel_array, rgb)
    assert back.SOPClassUID == "1.2.840.10008.5.1.4.1.1.77.1.4" and back.PatientBirthDate == "19800203"
    assert back.SOPInstanceUID == ds.SOPInstanceUID
    record = DicomLoader(workers=1).load(tmp_path / "wound.dcm")[0][0]
    assert record.context.body_site == "left forearm"
    np.testing.assert_array_equal(record.pixels, rgb)


def test_jpeg_is_embedded_without_recompression_and_exif_is_dropped(tmp_path):
    img = Image.fromarray(_photo())
    exif = img.getexif()
    exif[0x010F] = "SecretPhoneMaker"
    exif[0x0132] = "2024:06:11 10:20:30"
    img.save(tmp_path / "wound.jpg", quality=92, exif=exif.tobytes())
    original = (tmp_path / "wound.jpg").read_bytes()
    wrap_photo(tmp_path / "wound.jpg", tmp_path / "wound.dcm", META)
    back = pydicom.dcmread(tmp_path / "wound.dcm")
    assert back.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.4.50"
    assert back.PhotometricInterpretation == "YBR_FULL_422"
    fragment = next(pydicom.encaps.generate_frames(back.PixelData, number_of_frames=1))
    assert fragment.rstrip(b"\x00") == strip_jpeg_app_segments(original)[0].rstrip(b"\x00")
    assert b"SecretPhoneMaker" in original and b"SecretPhoneMaker" not in (tmp_path / "wound.dcm").read_bytes()
    assert back.StudyDate == "20240611"  # taken from EXIF before it was dropped
    reference = np.asarray(Image.open(io.BytesIO(original)).convert("RGB")).astype(int)
    assert np.abs(back.pixel_array.astype(int) - reference).mean() < 2.0  # same bitstream, two IDCTs


def test_progressive_jpeg_is_decoded_once(tmp_path):
    Image.fromarray(_photo()).save(tmp_path / "p.jpg", progressive=True, quality=90)
    wrap_photo(tmp_path / "p.jpg", tmp_path / "p.dcm", META)
    back = pydicom.dcmread(tmp_path / "p.dcm")
    expected = np.asarray(Image.open(tmp_path / "p.jpg").convert("RGB"))
    np.testing.assert_array_equal(back.pixel_array, expected)


def test_bad_metadata_is_refused(tmp_path):
    Image.fromarray(_photo()).save(tmp_path / "w.png")
    with pytest.raises(ValueError, match="body_site"):
        wrap_photo(tmp_path / "w.png", tmp_path / "w.dcm", {"body_site": "elbowpit"})
    with pytest.raises(ValueError, match="unknown metadata"):
        wrap_photo(tmp_path / "w.png", tmp_path / "w.dcm", {"patient_nmae": "X"})


@pytest.mark.skipif(shutil.which("dciodvfy") is None, reason="dicom3tools (dciodvfy) not installed")
def test_wrapped_files_pass_dciodvfy(tmp_path):
    Image.fromarray(_photo()).save(tmp_path / "a.png")
    Image.fromarray(_photo()).save(tmp_path / "b.jpg", quality=90)
    for name in ("a.png", "b.jpg"):
        out = tmp_path / f"{name}.dcm"
        wrap_photo(tmp_path / name, out, META)
        assert _dciodvfy_errors(out) == []


def test_wrap_photo_cli_with_sidecar(tmp_path):
    Image.fromarray(_photo()).save(tmp_path / "w.png")
    Image.fromarray(_photo()).save(tmp_path / "w.jpg", quality=90)
    sidecar = tmp_path / "meta.json"
    sidecar.write_text(json.dumps({**META, "case": {"weight_kg": 60, "method": "palm"}}))
    app = typer.Typer()
    cmd_dicom.register(app, typer.Typer())

    @app.callback()
    def _root() -> None:
        pass

    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["wrap-photo", str(tmp_path / "w.png"), str(tmp_path / "w.jpg"),
                                      "-o", str(out), "--metadata", str(sidecar), "--patient-id", "P-99"])
    assert result.exit_code == 0, result.output
    images, errors = DicomLoader(workers=1).load(out)
    assert len(images) == 2 and not errors
    assert len({r.context.study_instance_uid for r in images}) == 1
    assert {r.context.patient.patient_id for r in images} == {"P-99"}
    assert images[0].context.case["weight_kg"] == 60


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("birth_date", "1990-13-45", "birth_date: not a valid value; expected a date"),
        ("birth_date", "19901345", "birth_date: not a valid value"),
        ("study_date", "yesterday", "study_date: not a valid value"),
        ("study_time", "25:61:00", "study_time: not a valid value"),
        ("patient_name", "A" * 70, "patient_name: not a valid value"),
        ("accession_number", "A" * 17, "accession_number: not a valid value"),
        ("study_instance_uid", "1.2.abc", "study_instance_uid: not a valid value"),
        ("instance_number", "1.5", "instance_number: not a valid value"),
        ("sex", "unknown", "sex: not a valid value"),
        ("laterality", "sideways", "laterality: not a valid value"),
    ],
)
def test_every_user_given_value_is_checked_against_its_vr(tmp_path, key, value, message):
    Image.fromarray(_photo()).save(tmp_path / "w.png")
    with pytest.raises(ValueError) as excinfo:
        wrap_photo(tmp_path / "w.png", tmp_path / "w.dcm", {**META, key: value})
    assert message in str(excinfo.value)
    assert value not in str(excinfo.value)  # values can be patient data: never echoed
    assert not (tmp_path / "w.dcm").exists()


def test_iso_and_dicom_dates_and_times_are_accepted(tmp_path):
    Image.fromarray(_photo()).save(tmp_path / "w.png")
    ds = wrap_photo(tmp_path / "w.png", tmp_path / "w.dcm",
                    {**META, "birth_date": "1980-02-29", "study_date": "20240611", "study_time": "09:30:15"})
    assert (ds.PatientBirthDate, ds.StudyDate, ds.StudyTime) == ("19800229", "20240611", "093015")


def _wrap_cli(*args: str):
    app = typer.Typer()
    cmd_dicom.register(app, typer.Typer())

    @app.callback()
    def _root() -> None:
        pass

    return CliRunner().invoke(app, ["wrap-photo", *args])


def test_cli_mistakes_are_one_line_without_a_traceback(tmp_path):
    not_image = tmp_path / "notes.jpg"
    not_image.write_text("minutes of the ward round")
    result = _wrap_cli(str(not_image), "-o", str(tmp_path / "out"))
    assert result.exit_code == 2
    assert "notes.jpg: not an image Pillow can read" in result.output
    assert "BytesIO" not in result.output and "Traceback" not in result.output
    Image.fromarray(_photo()).save(tmp_path / "w.png")
    result = _wrap_cli(str(tmp_path / "w.png"), "-o", str(tmp_path / "out"), "--birth-date", "1990-13-45")
    assert result.exit_code == 2 and "birth_date: not a valid value" in result.output
    assert not list((tmp_path / "out").glob("*.dcm"))
    (tmp_path / "file").write_text("x")
    result = _wrap_cli(str(tmp_path / "w.png"), "-o", str(tmp_path / "file"))
    assert result.exit_code == 2 and "is not a folder" in result.output and "Traceback" not in result.output
