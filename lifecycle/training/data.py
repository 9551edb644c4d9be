"""Labelled images for fine-tuning: where they are, who they belong to, and how they split.

Sources (``DATA`` of ``burnscope finetune``):

* a **labelled folder**, one sub-folder per class key as ``train-head`` takes it
  (``DATA/<class>/...``), DICOM or JPEG/PNG/BMP/TIFF anywhere below;
* a labelled folder with a **given split**: ``DATA/train/<class>/...`` and ``DATA/val/<class>/...``;
* a **CSV** with a header ``path,label`` and optional ``split`` (train/val) and ``patient``
  columns; relative paths are read from the CSV's folder.

Every image belongs to a **group** and train/validation are split by group, never by image, so
no patient is on both sides: DICOM files are grouped by PatientID (StudyInstanceUID when it is
empty); photographs by the ``patient`` column of a CSV, else by their sub-folder below the class
folder (``DATA/<class>/<patient>/img.jpg``), else by file name with a trailing number removed
(``p12_1.jpg`` and ``p12-2.png`` are patient ``p12``). Group keys are stored hashed: a split file
never holds a PatientID.

Images are decoded once into BiomedCLIP's 224×224 uint8 crop (resize shortest side, centre
crop: the pipeline's own resampling), so augmentation works on what inference sees.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from burnscope.operators.burn_severity.core import CLASSES, HeadError

log = logging.getLogger(__name__)

SPLITS = ("train", "val")
_SPLIT_ALIASES = {"train": "train", "training": "train", "val": "val", "valid": "val", "validation": "val"}
_TRAILING_NUMBER = re.compile(r"[-_ .]*\d+$")
DEFAULT_MIN_PER_CLASS = 4


class DataError(ValueError):
    """The labelled data cannot be trained on as given (said before any training starts)."""


@dataclass(frozen=True)
class Sample:
    path: Path
    label: str
    group: str  # hashed patient / study / file-name key
    split: str | None = None  # "train" / "val" when the user gave the split


@dataclass
class PreparedData:
    """Decoded crops and their labels, groups and split (one row per image or DICOM frame)."""

    crops: np.ndarray  # N×S×S×3 uint8
    labels: np.ndarray  # N int (index into classes)
    groups: list[str]
    sources: list[str]
    classes: list[str]
    train: np.ndarray  # row indices
    val: np.ndarray
    errors: list[tuple[str, str]] = field(default_factory=list)

    def digest(self) -> str:
        """Identity of the data and split (a resumed run must see the same)."""
        payload = json.dumps([self.sources, self.labels.tolist(), self.train.tolist(), self.val.tolist()])
        return hashlib.sha256(payload.encode() + hashlib.sha256(self.crops.tobytes()).digest()).hexdigest()[:16]


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:16]


def group_of(path: Path, class_dir: Path | None = None, patient: str | None = None) -> str:
    """The (hashed) group key of one image file; see the module docstring for the rule."""
    from burnscope.operators.dicom_loader.files import is_dicom_file

    if patient:
        return _hash(f"patient:{patient}")
    if is_dicom_file(path):
        import pydicom

        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["PatientID", "StudyInstanceUID"])
            for tag, kind in (("PatientID", "patient"), ("StudyInstanceUID", "study")):
                value = str(getattr(ds, tag, "") or "").strip()
                if value:
                    return _hash(f"{kind}:{value}")
        except Exception:  # unreadable header: the image itself is reported when decoded
            pass
    if class_dir is not None and path.parent != class_dir:
        return _hash(f"folder:{path.parent.relative_to(class_dir).as_posix()}")
    return _hash(f"file:{_TRAILING_NUMBER.sub('', path.stem) or path.stem}")


def _scan_classes(root: Path, split: str | None) -> list[Sample]:
    from burnscope.operators.burn_severity.dataset import scan_labelled_folder

    try:
        items = scan_labelled_folder(root)
    except HeadError as exc:
        raise DataError(str(exc)) from None
    return [Sample(path, label, group_of(path, root / label), split) for path, label in items]


def _read_csv(path: Path) -> list[Sample]:
    try:
        rows = list(csv.reader(path.read_text(encoding="utf-8-sig").splitlines()))
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read the CSV ({type(exc).__name__})") from None
    rows = [r for r in rows if r and any(c.strip() for c in r)]
    if not rows:
        raise DataError(f"{path}: the CSV is empty")
    header = [c.strip().lower() for c in rows[0]]
    if "path" in header and "label" in header:
        columns, rows = header, rows[1:]
    else:
        columns = ["path", "label", "split", "patient"][: len(rows[0])]
    samples, unknown, missing = [], set(), []
    for number, row in enumerate(rows, 2 if columns is header else 1):
        values = dict(zip(columns, (c.strip() for c in row)))
        label = values.get("label", "")
        if label not in CLASSES:
            unknown.add(label)
            continue
        file = Path(values.get("path", ""))
        file = file if file.is_absolute() else path.parent / file
        if not file.is_file():
            missing.append(f"line {number}: {file.name}")
            continue
        split = values.get("split") or None
        if split is not None:
            if split.lower() not in _SPLIT_ALIASES:
                raise DataError(f"{path}: line {number}: split {split!r} is not one of train, val")
            split = _SPLIT_ALIASES[split.lower()]
        samples.append(Sample(file, label, group_of(file, patient=values.get("patient") or None), split))
    if unknown:
        raise DataError(
            f"{path}: labels not among the five classes: {', '.join(sorted(map(repr, unknown)))}; "
            f"classes are {', '.join(CLASSES)}"
        )
    if missing:
        raise DataError(f"{path}: {len(missing)} listed file(s) not found ({', '.join(missing[:3])})")
    if not samples:
        raise DataError(f"{path}: no images listed")
    return samples


def read_dataset(data: str | Path) -> list[Sample]:
    """Samples of a labelled folder (with or without a given split) or a CSV."""
    data = Path(data)
    if data.is_file():
        if data.suffix.lower() != ".csv":
            raise DataError(f"{data}: expected a labelled folder or a .csv file")
        return _read_csv(data)
    if not data.is_dir():
        raise DataError(f"{data}: not found")
    split_dirs = {_SPLIT_ALIASES[p.name.lower()]: p for p in data.iterdir() if p.is_dir() and p.name.lower() in _SPLIT_ALIASES}
    if split_dirs:
        if set(split_dirs) != set(SPLITS):
            raise DataError(f"{data}: a given split needs both train/ and val/ sub-folders")
        return [s for name, folder in sorted(split_dirs.items()) for s in _scan_classes(folder, name)]
    return _scan_classes(data, None)


def check_dataset(samples: Sequence[Sample], min_per_class: int = DEFAULT_MIN_PER_CLASS) -> list[str]:
    """Raise :class:`DataError` for data that cannot be trained on; returns the classes present."""
    counts = {c: sum(s.label == c for s in samples) for c in CLASSES}
    present = [c for c in CLASSES if counts[c]]
    if len(present) < 2:
        raise DataError(f"need images of at least two classes, found {', '.join(present) or 'none'}")
    few = [f"{c} ({counts[c]})" for c in present if counts[c] < min_per_class]
    if few:
        raise DataError(
            f"too few images in class folder(s) {', '.join(few)}: at least {min_per_class} per class are needed "
            "(add images, or leave the class out)"
        )
    given = {s.split for s in samples}
    if given != {None}:
        if None in given:
            raise DataError("some images have a train/val split and some have none: give it for all or none")
        sides = {name: {s.group for s in samples if s.split == name} for name in SPLITS}
        both = sides["train"] & sides["val"]
        if both:
            examples = sorted({s.path.name for s in samples if s.group in both})[:4]
            raise DataError(
                f"{len(both)} patient(s)/stud(ies) appear in both train and val of the given split "
                f"(e.g. files {', '.join(examples)}): a patient must be on one side only"
            )
        missing = [c for c in present if not any(s.label == c and s.split == "train" for s in samples)]
        if missing:
            raise DataError(f"the given split has no training images of {', '.join(missing)}")
    return present


def split_by_group(
    labels: Sequence[int], groups: Sequence[str], val_fraction: float = 0.2, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Train/validation row indices, stratified by class, with every group on one side only."""
    from sklearn.model_selection import StratifiedGroupKFold

    labels = np.asarray(labels)
    n_groups = len(set(groups))
    n_splits = max(2, min(int(round(1.0 / max(val_fraction, 1e-6))), n_groups))
    if n_groups < 2:
        raise DataError("all images belong to one patient/study: a split by patient is impossible")
    folds = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    train, val = next(folds.split(np.zeros(len(labels)), labels, groups))
    return np.sort(train), np.sort(val)


def crop_uint8(rgb: np.ndarray, size: int) -> np.ndarray:
    """BiomedCLIP's resize (shortest side → size, Pillow-exact bicubic) and centre crop, as uint8."""
    from burnscope.operators.preprocess.core import center_crop_offsets, resize_uint8, shortest_side_shape

    height, width = shortest_side_shape(rgb.shape[0], rgb.shape[1], size)
    resized = resize_uint8(rgb, (height, width))
    top, left = center_crop_offsets(height, width, size)
    return np.ascontiguousarray(resized[top : top + size, left : left + size])


def prepare(
    samples: Sequence[Sample],
    *,
    size: int = 224,
    val_fraction: float = 0.2,
    seed: int = 0,
    min_per_class: int = DEFAULT_MIN_PER_CLASS,
    on_progress: Callable[[int, int], None] | None = None,
) -> PreparedData:
    """Decode every image (DICOM frames become rows of their file's group), re-check the counts
    after unreadable files were left out, and split by group (or take the given split)."""
    from burnscope.operators.dicom_loader.files import read_rgb_frames

    classes = check_dataset(samples, min_per_class)
    index = {c: i for i, c in enumerate(classes)}
    crops, labels, groups, sources, splits, errors = [], [], [], [], [], []
    for done, sample in enumerate(samples, 1):
        try:
            frames = read_rgb_frames(sample.path)
        except Exception as exc:  # one bad file never stops a run; it is reported
            errors.append((sample.path.name, str(exc)))
            frames = []
        for name, rgb in frames:
            crops.append(crop_uint8(rgb, size))
            labels.append(index[sample.label])
            groups.append(sample.group)
            sources.append(name)
            splits.append(sample.split)
        if on_progress:
            on_progress(done, len(samples))
    if errors:
        readable = [s for s in samples if s.path.name not in {name for name, _ in errors}]
        try:
            check_dataset(readable, min_per_class)
        except DataError as exc:
            raise DataError(f"{exc} — after leaving out {len(errors)} unreadable file(s)") from None
    labels_arr = np.asarray(labels, np.int64)
    if splits[0] is not None:
        train = np.array([i for i, s in enumerate(splits) if s == "train"], np.int64)
        val = np.array([i for i, s in enumerate(splits) if s == "val"], np.int64)
    else:
        train, val = split_by_group(labels_arr, groups, val_fraction, seed)
    not_trained = [classes[c] for c in range(len(classes)) if not np.any(labels_arr[train] == c)]
    if not_trained:
        raise DataError(f"the split by patient left no training images of {', '.join(not_trained)}; add patients")
    missing_val = [classes[c] for c in range(len(classes)) if not np.any(labels_arr[val] == c)]
    if missing_val:
        log.warning("no validation images of %s (too few patients for a split)", ", ".join(missing_val))
    assert not ({groups[i] for i in train} & {groups[i] for i in val})  # by construction
    return PreparedData(
        crops=np.stack(crops), labels=labels_arr, groups=groups, sources=sources,
        classes=classes, train=train, val=val, errors=errors,
    )


def save_prepared(data: PreparedData, folder: Path) -> None:
    """Write decoded data for the training workers (``crops.npy`` is memory-mapped by each)."""
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / "crops.npy", data.crops)
    meta = {
        "labels": data.labels.tolist(), "groups": data.groups, "sources": data.sources, "classes": data.classes,
        "train": data.train.tolist(), "val": data.val.tolist(), "errors": data.errors,
    }
    (folder / "dataset.json").write_text(json.dumps(meta), encoding="utf-8")


def load_prepared(folder: Path) -> PreparedData:
    meta: dict[str, Any] = json.loads((folder / "dataset.json").read_text(encoding="utf-8"))
    return PreparedData(
        crops=np.load(folder / "crops.npy", mmap_mode="r"),
        labels=np.asarray(meta["labels"], np.int64), groups=meta["groups"], sources=meta["sources"],
        classes=meta["classes"], train=np.asarray(meta["train"], np.int64), val=np.asarray(meta["val"], np.int64),
        errors=[tuple(e) for e in meta["errors"]],
    )
