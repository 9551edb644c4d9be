"""Generate burnscope's synthetic sample studies (deterministic: same bytes on every run).

    python sample_data/generate.py            # writes next to this script
    python sample_data/generate.py --out DIR  # somewhere else

Everything here is synthetic: the images are numpy-drawn skin-tone fields with reddish, white,
blistered and charred patches, and the patients, dates and institutions are invented.
The set exercises the loader: VL Photographic Image Storage (uncompressed explicit VR little
endian and JPEG baseline), a multi-frame true-colour secondary capture, a greyscale image,
one truncated DICOM file and one file that is not DICOM at all.
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.sequence import Sequence
from pydicom.uid import (
    ExplicitVRLittleEndian,
    JPEGBaseline8Bit,
    PYDICOM_IMPLEMENTATION_UID,
    generate_uid,
)

SEED = 20240611
VL_PHOTOGRAPHIC = "1.2.840.10008.5.1.4.1.1.77.1.4"
MULTIFRAME_TRUE_COLOR_SC = "1.2.840.10008.5.1.4.1.1.7.4"
SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
#: Root of the deterministic UIDs (UUID-derived 2.25 UIDs from fixed entropy).
UID_NAMESPACE = "burnscope-sample-data-v1"

# SNOMED CT codes of the body sites used (Anatomic Region Sequence, CID 4031 style).
BODY_SITES = {
    "forearm": ("14975008", "Forearm", "ARM"),
    "hand": ("85562004", "Hand", "HAND"),
    "chest": ("51185008", "Chest", "CHEST"),
    "lower_leg": ("30021000", "Lower leg", "LEG"),
    "back": ("77568009", "Back", "BACK"),
    "face": ("89545001", "Face", "FACE"),
    "foot": ("56459004", "Foot", "FOOT"),
}


@dataclass
class Patient:
    name: str
    patient_id: str
    birth_date: str
    sex: str
    age: str


@dataclass
class ImageSpec:
    file: str
    site: str
    laterality: str
    rows: int
    cols: int
    kind: str = "vl_photo"  # vl_photo | vl_photo_jpeg | multiframe | greyscale
    frames: int = 1
    patches: list[str] = field(default_factory=list)


@dataclass
class StudySpec:
    folder: str
    patient: Patient
    accession: str
    study_date: str
    study_time: str
    description: str
    institution: str
    case: dict
    images: list[ImageSpec]


STUDIES = [
    StudySpec(
        folder="study-001",
        patient=Patient("MARTINEZ^ELENA^ROSA", "BSN-4471203", "19780412", "F", "046Y"),
        accession="ACC24061101",
        study_date="20240611",
        study_time="093512",
        description="Burn wound photography - admission",
        institution="Riverside General Hospital (synthetic)",
        case={
            "age_years": 46,
            "weight_kg": 68,
            "hours_since_injury": 2.5,
            "mechanism": "thermal",
            "inhalation_injury": False,
            "method": "rule_of_nines",
            "burns": [
                {"region": "left_arm", "depth": "superficial_partial_thickness", "fraction": 0.5},
                {"region": "anterior_trunk", "depth": "deep_partial_thickness", "fraction": 0.25},
            ],
        },
        images=[
            ImageSpec("IMG-0001.dcm", "forearm", "L", 288, 384, patches=["red", "red", "blister"]),
            ImageSpec("IMG-0002.dcm", "hand", "L", 480, 360, kind="vl_photo_jpeg", patches=["red", "white"]),
            ImageSpec("IMG-0003.dcm", "chest", "", 256, 320, patches=["red", "white", "blister"]),
        ],
    ),
    StudySpec(
        folder="study-002",
        patient=Patient("OKAFOR^SAMUEL", "BSN-5520981", "20170203", "M", "007Y"),
        accession="ACC24061402",
        study_date="20240614",
        study_time="171045",
        description="Paediatric burn photography",
        institution="St. Brigid Children's Hospital (synthetic)",
        case={
            "age_years": 7,
            "weight_kg": 24,
            "hours_since_injury": 1.0,
            "mechanism": "thermal",
            "inhalation_injury": False,
            "method": "lund_browder",
            "burns": [
                {"region": "right_lower_leg", "depth": "deep_partial_thickness", "fraction": 0.6},
                {"region": "posterior_trunk", "depth": "superficial_partial_thickness", "fraction": 0.3},
            ],
        },
        images=[
            ImageSpec("IMG-0001.dcm", "lower_leg", "R", 320, 240, kind="vl_photo_jpeg", patches=["white", "red"]),
            ImageSpec("IMG-0002.dcm", "back", "", 256, 256, patches=["red", "red"]),
            # Written whole, then cut short: the loader must report it as truncated.
            ImageSpec("IMG-0003-truncated.dcm", "back", "", 256, 256, patches=["red"]),
        ],
    ),
    StudySpec(
        folder="study-003",
        patient=Patient("LINDQVIST^ANDERS", "BSN-6093314", "19660921", "M", "058Y"),
        accession="ACC24062003",
        study_date="20240620",
        study_time="022130",
        description="Electrical injury - wound documentation",
        institution="Northfield University Medical Center (synthetic)",
        case={
            "age_years": 58,
            "weight_kg": 85,
            "hours_since_injury": 6.0,
            "mechanism": "electrical",
            "inhalation_injury": False,
            "method": "palm",
            "burns": [{"palms": 3, "depth": "full_thickness"}],
        },
        images=[
            ImageSpec("IMG-0001.dcm", "face", "", 360, 270, kind="vl_photo_jpeg", patches=["red"]),
            ImageSpec("IMG-0002.dcm", "foot", "R", 240, 320, kind="vl_photo_jpeg", patches=["dark", "white"]),
            ImageSpec("IMG-0003-multiframe.dcm", "hand", "R", 192, 256, kind="multiframe", frames=2,
                      patches=["dark", "white", "red"]),
            ImageSpec("IMG-0004-greyscale.dcm", "hand", "R", 200, 200, kind="greyscale", patches=["dark"]),
        ],
    ),
]

PATCH_COLOURS = {  # RGB centre colours of the wound patches
    "red": (196, 62, 58),  # erythema / superficial partial thickness
    "white": (236, 228, 214),  # waxy white / full thickness
    "blister": (222, 170, 150),  # blistered, pale pink
    "dark": (58, 40, 34),  # charred / eschar
}


def _uid(*parts: str) -> str:
    return generate_uid(entropy_srcs=[UID_NAMESPACE, *parts])


def _smooth_noise(rng: np.random.Generator, rows: int, cols: int, scale: int) -> np.ndarray:
    """Low-frequency noise in [-1, 1]: random coarse grid upsampled bilinearly."""
    coarse = rng.uniform(-1, 1, (max(2, rows // scale), max(2, cols // scale))).astype(np.float32)
    img = Image.fromarray(coarse, mode="F").resize((cols, rows), Image.BILINEAR)
    return np.asarray(img, dtype=np.float32)


def synth_photo(rng: np.random.Generator, rows: int, cols: int, patches: list[str]) -> np.ndarray:
    """A skin-tone field with lighting falloff and elliptical wound patches (H×W×3 uint8)."""
    skin = np.array(rng.choice([(224, 182, 150), (198, 146, 112), (141, 96, 70), (236, 200, 176)]), np.float32)
    yy, xx = np.mgrid[0:rows, 0:cols].astype(np.float32)
    light = 1.0 - 0.25 * (((xx / cols - 0.4) ** 2 + (yy / rows - 0.35) ** 2) ** 0.5)
    img = skin[None, None, :] * light[..., None]
    img += 12 * _smooth_noise(rng, rows, cols, 24)[..., None]
    for kind in patches:
        cy, cx = rng.uniform(0.25, 0.75) * rows, rng.uniform(0.25, 0.75) * cols
        ry, rx = rng.uniform(0.08, 0.22) * rows, rng.uniform(0.08, 0.22) * cols
        angle = rng.uniform(0, np.pi)
        dy, dx = yy - cy, xx - cx
        u = (dx * np.cos(angle) + dy * np.sin(angle)) / rx
        v = (-dx * np.sin(angle) + dy * np.cos(angle)) / ry
        ragged = 0.25 * _smooth_noise(rng, rows, cols, 12)
        weight = np.clip(1.3 - (u**2 + v**2) - ragged, 0, 1)[..., None]
        colour = np.array(PATCH_COLOURS[kind], np.float32) * light[..., None]
        img = img * (1 - weight) + colour * weight
    img += rng.normal(0, 3.0, img.shape).astype(np.float32)  # sensor noise
    return np.clip(img, 0, 255).astype(np.uint8)


def _jpeg_baseline(rgb: np.ndarray) -> bytes:
    buf = io.BytesIO()
    # 4:2:2 chroma subsampling matches the YBR_FULL_422 photometric interpretation.
    Image.fromarray(rgb, "RGB").save(buf, format="JPEG", quality=90, subsampling=1)
    return buf.getvalue()


def build_dataset(study: StudySpec, image: ImageSpec, index: int, rng: np.random.Generator) -> Dataset:
    """One image of a study as a complete DICOM dataset (file meta included)."""
    p = study.patient
    study_uid = _uid(study.folder, "study")
    kind = image.kind
    series_no = 1 if kind in ("vl_photo", "vl_photo_jpeg") else 2 if kind == "multiframe" else 3
    series_uid = _uid(study.folder, "series", str(series_no))
    sop_uid = _uid(study.folder, image.file)
    sop_class = {"multiframe": MULTIFRAME_TRUE_COLOR_SC, "greyscale": SECONDARY_CAPTURE}.get(kind, VL_PHOTOGRAPHIC)
    minute = int(study.study_time[2:4]) + index
    content_time = f"{study.study_time[:2]}{minute:02d}{study.study_time[4:]}"

    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY"] if kind != "greyscale" else ["DERIVED", "SECONDARY"]
    ds.InstanceCreationDate = study.study_date
    ds.InstanceCreationTime = content_time
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_uid
    ds.StudyDate = study.study_date
    ds.SeriesDate = study.study_date
    ds.ContentDate = study.study_date
    ds.StudyTime = study.study_time
    ds.SeriesTime = study.study_time
    ds.ContentTime = content_time
    ds.AccessionNumber = study.accession
    ds.Modality = "XC" if kind in ("vl_photo", "vl_photo_jpeg", "multiframe") else "OT"
    if kind in ("multiframe", "greyscale"):
        ds.ConversionType = "DI" if kind == "multiframe" else "WSD"
    ds.Manufacturer = "burnscope synthetic camera"
    ds.InstitutionName = study.institution
    ds.ReferringPhysicianName = "HOUSE^ROBIN"
    ds.StudyDescription = study.description
    ds.SeriesDescription = {
        "multiframe": "Wound sequence",
        "greyscale": "Greyscale print scan",
    }.get(kind, "Clinical photographs")
    ds.ManufacturerModelName = "SYNTH-CAM 1"
    ds.PatientName = p.name
    ds.PatientID = p.patient_id
    ds.IssuerOfPatientID = "BURNSCOPE-SAMPLE"
    ds.PatientBirthDate = p.birth_date
    ds.PatientSex = p.sex
    ds.PatientAge = p.age
    ds.PatientWeight = str(study.case["weight_kg"])
    ds.BodyPartExamined = BODY_SITES[image.site][2]
    ds.DeviceSerialNumber = "SYN-0001"
    ds.SoftwareVersions = "burnscope sample_data/generate.py"
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.StudyID = study.folder.split("-")[-1]
    ds.SeriesNumber = series_no
    ds.InstanceNumber = index + 1
    ds.PatientOrientation = ""
    if image.laterality:
        ds.ImageLaterality = image.laterality
    elif kind in ("vl_photo", "vl_photo_jpeg"):
        ds.ImageLaterality = "U"  # unpaired body part
    code, meaning, _ = BODY_SITES[image.site]
    region = Dataset()
    region.CodeValue = code
    region.CodingSchemeDesignator = "SCT"
    region.CodeMeaning = meaning
    ds.AnatomicRegionSequence = Sequence([region])
    if kind in ("vl_photo", "vl_photo_jpeg"):
        ds.AcquisitionContextSequence = Sequence([])
        ds.AcquisitionDateTime = f"{study.study_date}{content_time}"

    rows, cols = image.rows, image.cols
    ds.Rows, ds.Columns = rows, cols
    ds.BitsAllocated = 8
    ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    frames = [synth_photo(rng, rows, cols, image.patches) for _ in range(image.frames)]
    if kind == "multiframe":
        # Second frame: the same wound a few seconds later, slightly shifted.
        frames[1] = np.roll(frames[0], shift=(6, -9), axis=(0, 1))
        ds.NumberOfFrames = image.frames
        ds.FrameTime = 3000.0  # ms between the captures
        ds.FrameIncrementPointer = 0x00181063  # (0018,1063) Frame Time
    if kind == "greyscale":
        # ITU-R BT.601 luma in integer arithmetic, rounded half up: the same byte on every CPU
        # (a float32 matrix product goes through BLAS, whose rounding depends on the CPU).
        rgb = frames[0].astype(np.uint32)
        grey = ((299 * rgb[..., 0] + 587 * rgb[..., 1] + 114 * rgb[..., 2] + 500) // 1000).astype(np.uint8)
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.PixelData = grey.tobytes()
        ds.BurnedInAnnotation = "NO"
        transfer_syntax = ExplicitVRLittleEndian
    else:
        ds.SamplesPerPixel = 3
        ds.PlanarConfiguration = 0
        if kind == "vl_photo_jpeg":
            ds.PhotometricInterpretation = "YBR_FULL_422"
            ds.LossyImageCompression = "01"
            ds.LossyImageCompressionRatio = f"{rows * cols * 3 / len(_jpeg_baseline(frames[0])):.2f}"
            ds.LossyImageCompressionMethod = "ISO_10918_1"
            ds.PixelData = encapsulate([_jpeg_baseline(f) for f in frames])
            ds["PixelData"].VR = "OB"
            transfer_syntax = JPEGBaseline8Bit
        else:
            ds.PhotometricInterpretation = "RGB"
            ds.LossyImageCompression = "00"
            ds.PixelData = np.stack(frames).tobytes()
            transfer_syntax = ExplicitVRLittleEndian
    if kind == "multiframe":
        ds.BurnedInAnnotation = "NO"
    if kind in ("vl_photo", "vl_photo_jpeg"):
        ds.BurnedInAnnotation = "NO"
        ds.RecognizableVisualFeatures = "NO"

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = transfer_syntax
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    meta.ImplementationVersionName = "BURNSCOPE_SAMPLE"
    ds.file_meta = meta
    ds.preamble = b"\x00" * 128
    return ds


def generate(out_dir: Path) -> dict:
    """Write all studies, sidecars, the bad files and manifest.json under ``out_dir``."""
    rng = np.random.default_rng(SEED)
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest: dict = {
        "synthetic": True,
        "generator": "sample_data/generate.py",
        "seed": SEED,
        "patients": [],
        "files": [],
    }
    for study in STUDIES:
        folder = out_dir / study.folder
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir()
        (folder / "case.json").write_text(json.dumps(study.case, indent=2) + "\n")
        p = study.patient
        manifest["patients"].append(
            {"name": p.name, "patient_id": p.patient_id, "birth_date": p.birth_date, "study": study.folder}
        )
        for index, image in enumerate(study.images):
            ds = build_dataset(study, image, index, rng)
            path = folder / image.file
            ds.save_as(path, enforce_file_format=True)
            entry = {
                "path": f"{study.folder}/{image.file}",
                "sop_instance_uid": ds.SOPInstanceUID,
                "sop_class_uid": ds.SOPClassUID,
                "transfer_syntax_uid": str(ds.file_meta.TransferSyntaxUID),
                "photometric_interpretation": ds.PhotometricInterpretation,
                "rows": image.rows,
                "columns": image.cols,
                "frames": image.frames,
                "body_site": BODY_SITES[image.site][1],
                "expected": "accepted",
            }
            if "truncated" in image.file:
                data = path.read_bytes()
                path.write_bytes(data[: len(data) - (image.rows * image.cols * 3) // 2])
                entry.update(expected="error", reason="truncated")
            manifest["files"].append(entry)
    notes = out_dir / "notes.txt"
    notes.write_text(
        "Ward notes (synthetic) - this file is not DICOM; the loader reports it as not_dicom.\n"
    )
    manifest["files"].append({"path": "notes.txt", "expected": "error", "reason": "not_dicom"})
    accepted = [f for f in manifest["files"] if f["expected"] == "accepted"]
    manifest["expected_images"] = sum(f["frames"] for f in accepted)
    manifest["expected_files_accepted"] = len(accepted)
    manifest["expected_errors"] = {f["path"]: f["reason"] for f in manifest["files"] if f["expected"] == "error"}
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent)
    args = parser.parse_args()
    manifest = generate(args.out)
    print(f"wrote {len(manifest['files'])} files ({manifest['expected_images']} images) to {args.out}")


if __name__ == "__main__":
    main()
