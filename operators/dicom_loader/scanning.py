"""Which files a folder, a file or a DICOMDIR contributes, in a stable order."""

from __future__ import annotations

import fnmatch
import logging
import os
from collections.abc import Iterable
from pathlib import Path

import pydicom

log = logging.getLogger("burnscope.dicom_loader")

#: File names the folder scan skips: sidecars, docs, scripts, hidden files and DICOMDIR
#: (a DICOMDIR is read for the files it references, not decoded itself).
DEFAULT_IGNORE = (".*", "*.json", "*.md", "*.py", "*.pyc", "DICOMDIR")


def _ignored(name: str, ignore: Iterable[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in ignore)


def read_dicomdir(dicomdir: Path) -> list[Path]:
    """Files referenced by a DICOMDIR (IMAGE and other instance records), in record order."""
    ds = pydicom.dcmread(dicomdir)
    base = dicomdir.parent
    files: list[Path] = []
    for record in ds.get("DirectoryRecordSequence", []):
        ref = record.get("ReferencedFileID")
        if not ref:
            continue
        parts = [ref] if isinstance(ref, str) else list(ref)
        candidate = base.joinpath(*parts)
        if not candidate.exists():  # media written on case-insensitive systems
            lowered = base.joinpath(*(p.lower() for p in parts))
            candidate = lowered if lowered.exists() else candidate
        files.append(candidate)
    return list(dict.fromkeys(files))


def scan(root: str | os.PathLike, ignore: Iterable[str] = DEFAULT_IGNORE) -> list[Path]:
    """Files the loader would read under ``root`` (a file or folder), in a stable order.

    Folders are walked recursively in sorted order. A folder holding a DICOMDIR contributes
    the files its records reference (its own subtree is not walked again), so media with
    extension-less file names load exactly as the DICOMDIR describes them.
    """
    root = Path(root)
    if not root.exists():
        raise FileNotFoundError(f"input path does not exist: {root}")
    if root.is_file():
        if root.name.upper() == "DICOMDIR":
            return [p for p in read_dicomdir(root) if p.exists()]
        return [root]
    ignore = tuple(ignore)
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        here = Path(dirpath)
        dicomdir = next((f for f in filenames if f.upper() == "DICOMDIR"), None)
        if dicomdir is not None:
            try:
                referenced = read_dicomdir(here / dicomdir)
            except Exception as exc:  # unreadable DICOMDIR: fall back to walking
                log.warning("DICOMDIR %s unreadable (%s); scanning the folder instead", here / dicomdir, exc)
            else:
                missing = [p for p in referenced if not p.exists()]
                if missing:
                    log.warning("DICOMDIR %s references %d missing file(s)", here / dicomdir, len(missing))
                found.extend(p for p in referenced if p.exists())
                dirnames[:] = []
                continue
        for name in sorted(filenames):
            if not _ignored(name, ignore):
                found.append(here / name)
    return found
