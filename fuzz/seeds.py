"""Write the seed corpora of the fuzz harnesses, made from ``sample_data`` (deterministic).

    python fuzz/seeds.py [--out fuzz/corpus]

One folder per harness: ``loader`` and ``scp`` (small DICOM datasets cut from the sample images
in every transfer syntax the loader decodes), ``photo`` (small JPEG/PNG crops), ``case``
(the sample ``case.json`` files) and ``selector`` (rules). The corpora are not committed; the
fuzzer grows them where they are.
"""

from __future__ import annotations

import argparse
import copy
import io
import json
import sys
import tempfile
import zlib
from pathlib import Path

import numpy as np
import pydicom
from PIL import Image
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLSLossless,
    RLELossless,
)

REPO = Path(__file__).resolve().parent.parent
SAMPLES = REPO / "sample_data"
#: The transfer syntaxes of fuzz_scp.py, in its order.
SCP_SYNTAXES = [
    "1.2.840.10008.1.2.1", "1.2.840.10008.1.2", "1.2.840.10008.1.2.2", "1.2.840.10008.1.2.1.99",
    "1.2.840.10008.1.2.5", "1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.50",
]
SIDE = 32  # seed images are 32×32 (openjpeg's smallest with its default levels): fast executions


def _crop(path: Path) -> tuple[pydicom.Dataset, np.ndarray]:
    ds = pydicom.dcmread(path)
    arr = ds.pixel_array
    if ds.get("NumberOfFrames") and int(ds.NumberOfFrames) > 1:
        arr = arr[:, :SIDE, :SIDE]
    else:
        arr = arr[:SIDE, :SIDE]
    if str(ds.PhotometricInterpretation).startswith("YBR"):
        from pydicom.pixels import convert_color_space

        arr = convert_color_space(arr, ds.PhotometricInterpretation, "RGB")
    return ds, np.ascontiguousarray(arr)


def _small(ds: pydicom.Dataset, arr: np.ndarray) -> pydicom.Dataset:
    out = copy.deepcopy(ds)
    del out.PixelData
    frames = arr.shape[0] if out.get("NumberOfFrames") and int(out.NumberOfFrames) > 1 else 1
    out.Rows, out.Columns = SIDE, SIDE
    if arr.ndim == (4 if frames > 1 else 3):
        out.PhotometricInterpretation, out.SamplesPerPixel, out.PlanarConfiguration = "RGB", 3, 0
    out.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    for key in ("LossyImageCompression", "LossyImageCompressionRatio", "LossyImageCompressionMethod"):
        if key in out:
            delattr(out, key)
    out.PixelData = arr.tobytes()
    out["PixelData"].VR = "OB" if out.BitsAllocated <= 8 else "OW"
    return out


def _bytes(ds: pydicom.Dataset) -> bytes:
    buf = io.BytesIO()
    pydicom.dcmwrite(buf, ds, enforce_file_format=True, little_endian=ds.file_meta.TransferSyntaxUID.is_little_endian,
                     implicit_vr=ds.file_meta.TransferSyntaxUID.is_implicit_VR)
    return buf.getvalue()


def dicom_seeds() -> dict[str, pydicom.Dataset]:
    """Small datasets in each transfer syntax, named by what they are."""
    picks = {
        "rgb": SAMPLES / "study-001" / "IMG-0001.dcm",
        "jpeg": SAMPLES / "study-001" / "IMG-0002.dcm",
        "multiframe": SAMPLES / "study-003" / "IMG-0003-multiframe.dcm",
        "grey": SAMPLES / "study-003" / "IMG-0004-greyscale.dcm",
    }
    seeds: dict[str, pydicom.Dataset] = {}
    for name, path in picks.items():
        ds, arr = _crop(path)
        small = _small(ds, arr)
        seeds[f"{name}-explicit"] = small
        for ts, label in ((ImplicitVRLittleEndian, "implicit"), (ExplicitVRBigEndian, "bigendian"),
                          (DeflatedExplicitVRLittleEndian, "deflated")):
            other = copy.deepcopy(small)
            other.file_meta.TransferSyntaxUID = ts
            if ts == ExplicitVRBigEndian and other.BitsAllocated > 8:
                continue
            seeds[f"{name}-{label}"] = other
        for ts, label in ((RLELossless, "rle"), (JPEGLSLossless, "jpegls"), (JPEG2000Lossless, "j2k")):
            other = copy.deepcopy(small)
            try:
                other.compress(ts, arr, generate_instance_uid=False)
            except Exception as exc:  # an encoder plugin that is not installed
                print(f"  (no {label} seed for {name}: {exc})", file=sys.stderr)
                continue
            seeds[f"{name}-{label}"] = other
    with tempfile.TemporaryDirectory() as tmp:  # JPEG baseline as wrap-photo embeds it
        from burnscope.operators.dicom_loader.photo import wrap_photo

        _, arr = _crop(picks["rgb"])
        jpg = Path(tmp) / "p.jpg"
        Image.fromarray(arr).save(jpg, quality=90)
        seeds["rgb-jpeg-baseline"] = wrap_photo(jpg, Path(tmp) / "p.dcm", {"patient_name": "SEED^ONLY"})
    return seeds


def photo_seeds() -> dict[str, bytes]:
    _, arr = _crop(SAMPLES / "study-001" / "IMG-0001.dcm")
    out = {}
    for name, kwargs, fmt, mode in (
        ("baseline.jpg", {"quality": 85}, "JPEG", "RGB"), ("progressive.jpg", {"progressive": True}, "JPEG", "RGB"),
        ("grey.jpg", {}, "JPEG", "L"), ("rgb.png", {}, "PNG", "RGB"), ("grey.png", {}, "PNG", "L"),
        ("rgba.png", {}, "PNG", "RGBA"),
    ):
        buf = io.BytesIO()
        img = Image.fromarray(arr).convert(mode)
        if fmt == "JPEG" and name == "baseline.jpg":
            exif = Image.Exif()
            exif[0x0132] = "2024:05:06 10:11:12"
            kwargs = {**kwargs, "exif": exif.tobytes()}
        img.save(buf, fmt, **kwargs)
        out[name] = buf.getvalue()
    return out


def write(out: Path) -> dict[str, int]:
    counts = {}
    dicoms = dicom_seeds()
    folders = {name: out / name for name in ("loader", "scp", "photo", "case", "selector")}
    for folder in folders.values():
        folder.mkdir(parents=True, exist_ok=True)
    for name, ds in dicoms.items():
        (folders["loader"] / f"{name}.dcm").write_bytes(_bytes(ds))
        # scp: first byte = transfer syntax index (fuzz_scp.SYNTAXES), then the bare dataset
        ts = ds.file_meta.TransferSyntaxUID
        index = SCP_SYNTAXES.index(str(ts)) if str(ts) in SCP_SYNTAXES else 0
        fp = DicomBytesIO()
        fp.is_little_endian = ts.is_little_endian
        fp.is_implicit_VR = ts.is_implicit_VR
        write_dataset(fp, ds)
        raw = fp.getvalue()
        if ts == DeflatedExplicitVRLittleEndian:
            packer = zlib.compressobj(wbits=-zlib.MAX_WBITS)
            raw = packer.compress(raw) + packer.flush()
        (folders["scp"] / f"{name}.bin").write_bytes(bytes([index]) + raw)
    cut = (SAMPLES / "study-002" / "IMG-0003-truncated.dcm").read_bytes()[:1500]
    (folders["loader"] / "truncated-header.dcm").write_bytes(cut)
    for name, data in photo_seeds().items():
        for meta in range(3):
            (folders["photo"] / f"{meta}-{name}").write_bytes(bytes([meta]) + data)
    for path in sorted(SAMPLES.glob("study-*/case.json")):
        (folders["case"] / f"{path.parent.name}.json").write_bytes(b"\x00" + path.read_bytes())
    rules = [
        {"selections": [{"name": "photographs",
                         "include": {"SOPClassUID": ["1.2.840.10008.5.1.4.1.1.77.1.4"], "Modality": "XC",
                                     "Rows": {"range": [200, None]}},
                         "exclude": {"ImageType": {"regex": "DERIVED"},
                                     "SeriesDescription": {"regex": "(?i)consent|document"}}}]},
        {"selections": [{"include": {"(0008,0060)": "OT", "00280010": {"present": True}}}]},
        [{"name": "any", "exclude": {"BodyPartExamined": ["HAND", "FOOT"]}}],
    ]
    for i, rule in enumerate(rules):
        (folders["selector"] / f"rules-{i}.json").write_bytes(b"\x00" + json.dumps(rule).encode())
    for name, folder in folders.items():
        counts[name] = len(list(folder.iterdir()))
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "corpus")
    args = parser.parse_args()
    pydicom.config.settings.reading_validation_mode = pydicom.config.IGNORE
    for name, n in write(args.out).items():
        print(f"{name}: {n} seed(s) in {args.out / name}")


if __name__ == "__main__":
    main()
