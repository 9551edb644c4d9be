"""DICOM loader core and its Holoscan source operator."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.pixels import convert_color_space
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from burnscope.operators.dicom_loader.core import REASONS, DicomLoader, scan, to_rgb8
from fixtures import SAMPLE_DATA

SAMPLE = SAMPLE_DATA
MANIFEST = json.loads((SAMPLE / "manifest.json").read_text())
PYDICOM_FILES = Path(pydicom.__file__).parent / "data" / "test_files"

# Bundled pydicom files that must NOT decode, and why. Every other file with pixel data must.
EXPECTED_FAILURES = {
    "JPEG-lossy.dcm": "decode_failed",  # 12-bit JPEG extended with a bad marker: no plugin decodes it
    "JPEG2000-embedded-sequence-delimiter.dcm": "decode_failed",  # corrupt J2K header
    "MR_truncated.dcm": "truncated",
    "badVR.dcm": "decode_failed",  # NumberOfFrames '1A'
    "meta_missing_tsyntax.dcm": "decode_failed",  # pixel data but no image pixel module
    "nested_priv_SQ.dcm": "decode_failed",
}


def _bundled_files() -> list[Path]:
    return [p for p in sorted(PYDICOM_FILES.iterdir()) if p.is_file() and not p.name.startswith(".")]


def _has_pixels(path: Path) -> bool:
    try:
        return "PixelData" in pydicom.dcmread(path, force=True)
    except Exception:
        return False


@pytest.fixture(scope="module")
def loader() -> DicomLoader:
    return DicomLoader(workers=1)


@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize("path", _bundled_files(), ids=lambda p: p.name)
def test_bundled_pydicom_file(path: Path, loader: DicomLoader):
    result = loader.load_file_result(path)
    if not _has_pixels(path):
        assert result.error is not None and result.error.reason in ("not_dicom", "no_pixel_data")
        return
    if path.name in EXPECTED_FAILURES:
        assert result.error is not None, "expected a structured error"
        assert result.error.reason == EXPECTED_FAILURES[path.name]
        assert result.error.source == str(path) and result.error.message
        return
    assert result.error is None, result.error
    ds = pydicom.dcmread(path)
    reference = ds.pixel_array
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    assert len(result.images) == frames
    for index, record in enumerate(result.images):
        frame = reference[index] if frames > 1 else reference
        expected = to_rgb8(frame, ds, index)
        if ds.get("PhotometricInterpretation") == "RGB" and ds.get("BitsAllocated") == 8:
            # native 8-bit RGB needs no conversion: check against pydicom directly, not only
            # through the loader's own colour handling
            np.testing.assert_array_equal(record.pixels, frame)
        assert record.pixels.shape == (ds.Rows, ds.Columns, 3)
        assert record.pixels.dtype == np.uint8
        np.testing.assert_array_equal(record.pixels, expected)
        assert record.context.frame_number == index + 1
        assert record.context.sop_instance_uid == str(ds.get("SOPInstanceUID", ""))


def test_reason_codes_are_the_documented_ones():
    assert set(EXPECTED_FAILURES.values()) <= set(REASONS)
    assert REASONS == ("not_dicom", "no_pixel_data", "unsupported_transfer_syntax", "decode_failed", "too_large", "truncated",
                       "decoder_crashed", "decode_timeout")


# ---------------------------------------------------------------------------- synthetic datasets


def _dataset(tmp_path: Path, name: str, pixels: np.ndarray, photometric: str, **attrs) -> Path:
    ds = Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.Modality = "OT"
    ds.PatientName = "TEST^PATIENT"
    ds.PatientID = "T-1"
    ds.Rows, ds.Columns = pixels.shape[-3:-1] if pixels.ndim >= 3 and photometric not in ("MONOCHROME1", "MONOCHROME2") else pixels.shape[-2:]
    ds.SamplesPerPixel = 3 if photometric in ("RGB", "YBR_FULL") else 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = pixels.dtype.itemsize * 8
    ds.BitsStored = ds.BitsAllocated
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = 1 if pixels.dtype.kind == "i" else 0
    if ds.SamplesPerPixel == 3:
        ds.PlanarConfiguration = 0
    for key, value in attrs.items():
        setattr(ds, key, value)
    ds.PixelData = pixels.tobytes()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    path = tmp_path / name
    ds.save_as(path, enforce_file_format=True)
    return path


def _rgb_image(rows: int = 24, cols: int = 32) -> np.ndarray:
    rng = np.random.default_rng(7)
    return rng.integers(0, 256, (rows, cols, 3), dtype=np.uint8)


def test_monochrome1_is_inverted(tmp_path, loader):
    grey = np.arange(0, 240, dtype=np.uint8).reshape(12, 20)
    m2 = loader.load(_dataset(tmp_path, "m2.dcm", grey, "MONOCHROME2"))[0][0].pixels
    m1 = loader.load(_dataset(tmp_path, "m1.dcm", grey, "MONOCHROME1"))[0][0].pixels
    np.testing.assert_array_equal(m2[..., 0], grey)  # 8-bit grey without VOI keeps its values
    np.testing.assert_array_equal(m1, 255 - m2)
    assert (m2[..., 0] == m2[..., 1]).all() and (m2[..., 1] == m2[..., 2]).all()


def test_16_bit_grey_uses_modality_and_voi_window(tmp_path, loader):
    # CT-like: stored + (-1024) = HU; window 40/400 maps [-160, 240] HU to [0, 255].
    stored = np.array([[0, 864, 1064, 1264, 3000]], dtype=np.uint16)  # HU -1024, -160, 40, 240, 1976
    path = _dataset(
        tmp_path, "ct.dcm", stored, "MONOCHROME2",
        RescaleIntercept=-1024, RescaleSlope=1, WindowCenter=40, WindowWidth=400, BitsStored=12, HighBit=11,
    )
    out = loader.load(path)[0][0].pixels[0, :, 0]
    assert out[0] == 0 and out[1] == 0 and out[3] == 255 and out[4] == 255
    assert abs(int(out[2]) - 128) <= 1


def test_16_bit_grey_without_window_is_stretched(tmp_path, loader):
    stored = np.array([[100, 600, 1100]], dtype=np.uint16)
    out = loader.load(_dataset(tmp_path, "mr.dcm", stored, "MONOCHROME2", BitsStored=12, HighBit=11))[0][0].pixels
    assert out[0, :, 0].tolist() == [0, 128, 255]


def test_native_ybr_full_becomes_rgb(tmp_path, loader):
    rgb = _rgb_image()
    ybr = convert_color_space(rgb, "RGB", "YBR_FULL")
    out = loader.load(_dataset(tmp_path, "ybr.dcm", ybr, "YBR_FULL"))[0][0].pixels
    assert np.abs(out.astype(int) - rgb.astype(int)).max() <= 2


def test_planar_configuration_1(tmp_path, loader):
    rgb = _rgb_image()
    planar = np.ascontiguousarray(rgb.transpose(2, 0, 1))  # RRR…GGG…BBB…
    path = _dataset(tmp_path, "planar.dcm", rgb, "RGB", PlanarConfiguration=1)
    ds = pydicom.dcmread(path)
    ds.PixelData = planar.tobytes()
    ds.save_as(path)
    np.testing.assert_array_equal(loader.load(path)[0][0].pixels, rgb)


def test_16_and_32_bit_rgb_scale_to_8_bit(loader):
    eight = loader.load(PYDICOM_FILES / "SC_rgb_rle.dcm")[0][0].pixels
    for name in ("SC_rgb_rle_16bit.dcm", "SC_rgb_rle_32bit.dcm"):
        np.testing.assert_array_equal(loader.load(PYDICOM_FILES / name)[0][0].pixels, eight)


def test_palette_colour_matches_the_lookup_tables(loader):
    path = PYDICOM_FILES / "examples_palette.dcm"
    ds = pydicom.dcmread(path)
    out = loader.load(path)[0][0].pixels
    first, bits = int(ds.RedPaletteColorLookupTableDescriptor[1]), int(ds.RedPaletteColorLookupTableDescriptor[2])
    luts = [
        np.frombuffer(getattr(ds, f"{c}PaletteColorLookupTableData"), dtype="<u2" if bits > 8 else "u1")
        for c in ("Red", "Green", "Blue")
    ]
    stored = ds.pixel_array
    for y, x in [(0, 0), (100, 200), (ds.Rows - 1, ds.Columns - 1), (ds.Rows // 2, ds.Columns // 3)]:
        index = int(np.clip(int(stored[y, x]) - first, 0, len(luts[0]) - 1))
        expected = [int(lut[index]) >> (bits - 8) for lut in luts]
        assert out[y, x].tolist() == expected


def test_multiframe_gives_one_record_per_frame(loader):
    images, errors = loader.load(PYDICOM_FILES / "examples_ybr_color.dcm")
    assert not errors
    assert [r.context.frame_number for r in images] == list(range(1, 31))
    assert images[1].context.label.endswith("#2")
    assert len({r.context.sop_instance_uid for r in images}) == 1


# ---------------------------------------------------------------------------- errors and limits


def test_too_large_is_rejected_before_decoding():
    small = DicomLoader(max_pixels=256 * 256, workers=1)
    images, errors = small.load(SAMPLE / "study-001" / "IMG-0001.dcm")  # 384×288
    assert images == [] and errors[0].reason == "too_large"
    assert errors[0].sop_instance_uid  # readable header: the UID is reported
    ok, _ = DicomLoader(max_pixels=384 * 288, workers=1).load(SAMPLE / "study-001" / "IMG-0001.dcm")
    assert len(ok) == 1


def test_frames_count_towards_the_limit():
    images, errors = DicomLoader(max_pixels=256 * 192, workers=1).load(SAMPLE / "study-003" / "IMG-0003-multiframe.dcm")
    assert not images and errors[0].reason == "too_large"


@pytest.mark.filterwarnings("ignore:End of file reached")
def test_truncated_encapsulated_file(tmp_path, loader):
    data = (SAMPLE / "study-001" / "IMG-0002.dcm").read_bytes()
    cut = tmp_path / "cut.dcm"
    cut.write_bytes(data[: len(data) - 3000])
    assert loader.load(cut)[1][0].reason == "truncated"


def test_no_pixel_data_and_not_dicom(tmp_path, loader):
    assert loader.load(PYDICOM_FILES / "rtplan.dcm")[1][0].reason == "no_pixel_data"
    junk = tmp_path / "photo.jpg"
    junk.write_bytes(b"\xff\xd8\xff\xe0" + bytes(range(256)) * 4)
    assert loader.load(junk)[1][0].reason == "not_dicom"
    empty = tmp_path / "empty.dcm"
    empty.write_bytes(b"")
    assert loader.load(empty)[1][0].reason == "not_dicom"


def test_unsupported_transfer_syntax(tmp_path, loader):
    src = SAMPLE / "study-002" / "IMG-0002.dcm"
    ds = pydicom.dcmread(src)
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.100"  # MPEG2: no decoder exists
    ds.PixelData = encapsulate([b"\x00\x00\x01\xb3" + bytes(60)])
    ds["PixelData"].VR = "OB"
    path = tmp_path / "mpeg.dcm"
    ds.save_as(path)
    errors = loader.load(path)[1]
    assert errors[0].reason == "unsupported_transfer_syntax"
    assert errors[0].sop_instance_uid == ds.SOPInstanceUID


# ---------------------------------------------------------------------------- scanning, sidecars, order


def test_dicomdir_is_followed():
    root = PYDICOM_FILES / "dicomdirtests"
    files = scan(root)
    ds = pydicom.dcmread(root / "DICOMDIR")
    referenced = {
        (r.ReferencedFileID,) if isinstance(r.ReferencedFileID, str) else tuple(r.ReferencedFileID)
        for r in ds.DirectoryRecordSequence
        if "ReferencedFileID" in r
    }
    assert len(files) == len(referenced) > 0
    assert all(p.exists() and p.name != "DICOMDIR" for p in files)
    assert scan(root / "DICOMDIR") == files
    images, errors = DicomLoader(workers=2).load(root)
    assert len(images) >= len(files) - len(errors) and images


def test_scan_skips_sidecars_and_docs():
    names = {p.relative_to(SAMPLE).as_posix() for p in scan(SAMPLE)}
    assert "notes.txt" in names
    assert not any(n.endswith((".json", ".md", ".py")) for n in names)


def test_sidecars_merge_study_then_image(tmp_path, loader):
    study = tmp_path / "study" / "series"
    study.mkdir(parents=True)
    src = SAMPLE / "study-001" / "IMG-0001.dcm"
    (study / "IMG.dcm").write_bytes(src.read_bytes())
    (tmp_path / "study" / "case.json").write_text(json.dumps({"weight_kg": 70, "mechanism": "chemical"}))
    (study / "IMG.json").write_text(json.dumps({"mechanism": "thermal", "hours_since_injury": 3}))
    record = loader.load(tmp_path)[0][0]
    assert record.context.case == {"weight_kg": 70, "mechanism": "thermal", "hours_since_injury": 3, "age_years": 46}
    assert record.context.body_site == "left forearm"
    assert record.context.study_date == "20240611" and record.context.modality == "XC"


def test_parallel_decode_keeps_order_and_pixels():
    serial_images, serial_errors = DicomLoader(workers=1).load(SAMPLE)
    parallel_images, parallel_errors = DicomLoader(workers=3).load(SAMPLE)
    assert [r.context.label for r in serial_images] == [r.context.label for r in parallel_images]
    assert [e.source for e in serial_errors] == [e.source for e in parallel_errors]
    for a, b in zip(serial_images, parallel_images):
        np.testing.assert_array_equal(a.pixels, b.pixels)


def test_iter_batches_sizes_and_progress():
    loader = DicomLoader(workers=2)
    seen = []
    batches = list(loader.iter_batches(SAMPLE, batch_size=4, on_file=lambda r: seen.append(r.path)))
    assert [len(images) for images, _ in batches] == [4, 4, 2]
    assert sum(len(errors) for _, errors in batches) == 2
    assert len(seen) == len(loader.scan(SAMPLE))


def test_missing_input_raises(tmp_path):
    with pytest.raises(FileNotFoundError):
        DicomLoader().scan(tmp_path / "nope")


# ---------------------------------------------------------------------------- no PHI in logs


def _phi_strings() -> list[str]:
    out = []
    for p in MANIFEST["patients"]:
        out += [p["name"], p["name"].replace("^", " "), p["patient_id"], p["birth_date"]]
        out += [part for part in p["name"].split("^") if len(part) > 3]
    return out


def test_no_phi_in_logs_or_reprs(caplog):
    caplog.set_level(logging.DEBUG)
    images, errors = DicomLoader(workers=2).load(SAMPLE)
    logging.getLogger("burnscope.test").info("loaded %s %s", images, errors)
    logging.getLogger("burnscope.test").info("first context %r", images[0].context)
    text = caplog.text
    assert "IMG-0003-truncated.dcm" in text  # the bad file is named...
    for phi in _phi_strings():
        assert phi not in text  # ...but no patient is


# ---------------------------------------------------------------------------- Holoscan source operator


def _run_graph(input_path, batch_size=4):
    from burnscope.operators.holoscan_runtime import holoscan  # noqa: F401
    from holoscan.core import Application, Operator

    from burnscope.operators.dicom_loader.operator import DicomFolderSourceOp

    class Collect(Operator):
        def __init__(self, fragment, *args, **kwargs):
            self.received = []
            super().__init__(fragment, *args, **kwargs)

        def setup(self, spec):
            spec.input("images")
            spec.input("errors")

        def compute(self, op_input, op_output, context):
            self.received.append((op_input.receive("images"), op_input.receive("errors")))

    progress = []

    class App(Application):
        def compose(self):
            self.source = DicomFolderSourceOp(
                self, name="dicom_loader", input_path=str(input_path), batch_size=batch_size, workers=2,
                on_progress=lambda done, total, result: progress.append((done, total)),
            )
            self.sink = Collect(self, name="collect")
            self.add_flow(self.source, self.sink, {("images", "images"), ("errors", "errors")})

    app = App()
    app.run()
    return app, progress


def test_source_operator_emits_batches_and_stops(caplog):
    caplog.set_level(logging.DEBUG)
    app, progress = _run_graph(SAMPLE)
    received = app.sink.received
    assert [len(images) for images, _ in received] == [4, 4, 2]
    assert sorted(e.reason for _, errors in received for e in errors) == ["not_dicom", "truncated"]
    source = app.source
    assert (source.files_total, source.files_done) == (11, 11)
    assert (source.images_emitted, source.errors_emitted, source.batches_emitted) == (10, 2, 3)
    assert progress[-1] == (11, 11)
    for phi in _phi_strings():
        assert phi not in caplog.text


def test_source_operator_on_empty_folder(tmp_path):
    app, _ = _run_graph(tmp_path)
    assert app.sink.received == [([], [])]


def test_process_pool_gives_the_same_result():
    serial_images, serial_errors = DicomLoader(workers=1).load(SAMPLE)
    with DicomLoader(workers=2, executor="process") as loader:
        images, errors = loader.load(SAMPLE)
    assert [r.context.label for r in images] == [r.context.label for r in serial_images]
    assert [(e.source, e.reason) for e in errors] == [(e.source, e.reason) for e in serial_errors]
    for a, b in zip(serial_images, images):
        np.testing.assert_array_equal(a.pixels, b.pixels)
    with pytest.raises(ValueError):
        DicomLoader(executor="fibers")


def test_pillow_plugin_for_jpeg_photographs():
    path = SAMPLE / "study-001" / "IMG-0002.dcm"  # JPEG baseline, YBR_FULL_422
    default = DicomLoader(workers=1).load(path)[0][0].pixels
    pillow = DicomLoader(workers=1, decoding_plugin="pillow").load(path)[0][0].pixels
    assert pillow.shape == default.shape
    assert np.abs(pillow.astype(int) - default).max() <= 4  # two JPEG decoders, two IDCTs
    # A plugin that cannot decode a file falls back to pydicom's choice.
    rle = DicomLoader(workers=1, decoding_plugin="pillow").load(PYDICOM_FILES / "SC_rgb_rle.dcm")
    assert len(rle[0]) == 1 and not rle[1]


def test_malformed_phi_values_stay_out_of_logs_and_warnings(tmp_path, caplog, recwarn):
    ds = pydicom.dcmread(SAMPLE / "study-001" / "IMG-0001.dcm")
    ds.PatientBirthDate = "12/04/1978"  # invalid DA: pydicom's validator would quote it
    ds.PatientName = "VERYLONGFAMILYNAME" * 4  # PN component over 64 characters
    path = tmp_path / "bad-values.dcm"
    ds.save_as(path)
    caplog.set_level(logging.DEBUG)
    images, errors = DicomLoader(workers=1).load(path)
    assert len(images) == 1 and not errors
    assert images[0].context.patient.birth_date == "12/04/1978"  # kept for the report, not logged
    seen = caplog.text + " ".join(str(w.message) for w in recwarn)
    assert "12/04/1978" not in seen and "VERYLONGFAMILYNAME" not in seen


def test_image_file_rules_and_frames(tmp_path):
    from burnscope.operators.dicom_loader.files import is_dicom_file, is_image_file, read_rgb_frames

    sample = SAMPLE_DATA
    bare = tmp_path / "IMG0001"  # DICOM without a suffix: recognised by its preamble
    bare.write_bytes((sample / "study-003" / "IMG-0003-multiframe.dcm").read_bytes())
    notes = sample / "notes.txt"
    assert is_dicom_file(bare) and is_image_file(bare)
    assert not is_dicom_file(notes) and not is_image_file(notes)
    hidden = tmp_path / ".IMG0001.dcm"
    hidden.write_bytes(bare.read_bytes())
    assert not is_image_file(hidden)
    frames = read_rgb_frames(bare)
    assert [label for label, _ in frames] == ["IMG0001#1", "IMG0001#2"]
    assert all(rgb.dtype == np.uint8 and rgb.shape == (192, 256, 3) for _, rgb in frames)
    with pytest.raises(ValueError, match="truncated"):
        read_rgb_frames(sample / "study-002" / "IMG-0003-truncated.dcm")
    with pytest.raises(ValueError, match="not a readable image"):
        read_rgb_frames(notes)
