"""Compare two report folders written by ``burnscope run`` for the same input.

Run both with the same ``SOURCE_DATE_EPOCH`` so the report clock is fixed. Bytes must match,
except for what is fresh by design on every run: FHIR ``urn:uuid`` ids (mapped to placeholders
in order of appearance), the creation times highdicom stamps itself, and random tracking UIDs.
``summary.json`` (wall time) and ``errors.jsonl`` times are left out, and so are the state files
of a run (the outbox, the intake journal, the audit log) and the SCP's spool.

    python tools/compare_reports.py OLD_DIR NEW_DIR
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

_UUID = re.compile(rb"urn:uuid:[0-9a-f-]{36}")
_TIME_FIELD = re.compile(rb'"time": "[^"]*"')
FRESH_DICOM = {"InstanceCreationDate", "InstanceCreationTime", "ContributionDateTime"}


def _placeholders(data: bytes, pattern: re.Pattern[bytes]) -> bytes:
    seen: dict[bytes, bytes] = {}
    return pattern.sub(lambda m: seen.setdefault(m.group(0), b"<id%d>" % len(seen)), data)


def _dicom_text(path: Path) -> bytes:
    import pydicom

    ds = pydicom.dcmread(path)
    uids: dict[str, str] = {}

    def scrub(dataset) -> None:
        for elem in dataset:
            if elem.keyword in FRESH_DICOM:
                elem.value = ""
            elif elem.keyword == "UID":  # (0040,A124) tracking UID: uuid4 per run
                elem.value = uids.setdefault(str(elem.value), f"1.{len(uids)}")
            elif elem.VR == "SQ":
                for item in elem.value:
                    scrub(item)

    scrub(ds)
    return str(ds).encode()


def canonical(path: Path) -> bytes:
    if path.name.endswith(".dcm"):
        return _dicom_text(path)
    data = path.read_bytes()
    if path.name == "errors.jsonl":
        data = _TIME_FIELD.sub(b'"time": ""', data)
    return _placeholders(data, _UUID)


def compare(old: Path, new: Path) -> list[str]:
    skip = {"summary.json", "outbox.sqlite", "audit.jsonl", "journal.sqlite", "journal.sqlite-wal", "journal.sqlite-shm"}
    files = lambda root: {p.relative_to(root) for p in root.rglob("*")
                          if p.is_file() and p.name not in skip and p.relative_to(root).parts[0] != "spool"}
    a, b = files(old), files(new)
    problems = [f"only in {old}: {p}" for p in sorted(a - b)] + [f"only in {new}: {p}" for p in sorted(b - a)]
    problems += [f"differs: {p}" for p in sorted(a & b) if canonical(old / p) != canonical(new / p)]
    return problems


if __name__ == "__main__":
    found = compare(Path(sys.argv[1]), Path(sys.argv[2]))
    print("\n".join(found) or f"identical: {len(list(Path(sys.argv[1]).rglob('*')))} entries")
    sys.exit(1 if found else 0)
