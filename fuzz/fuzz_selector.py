"""Fuzz the series-selection rules (``operators/dicom_loader/selector.py``).

Input: rules as JSON text, or a rules value built from the bytes. Pass: ``SeriesSelector``
either accepts them or raises ``RuleError`` (a ``ValueError`` with a message; JSON text that
does not parse raises the JSON reader's ``ValueError``); an accepted selector judges every
dataset without raising.
"""

from __future__ import annotations

import atheris

with atheris.instrument_imports(include=["burnscope"]):
    from burnscope.operators.dicom_loader.selector import RuleError, SeriesSelector

import _harness
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

KEYS = (
    "selections", "name", "include", "exclude", "regex", "range", "present", "Modality", "SOPClassUID", "Rows",
    "Columns", "ImageType", "SeriesDescription", "BodyPartExamined", "(0008,0060)", "00280010", "0008,103E",
    "AnatomicRegionSequence", "XC", "OT", "DERIVED", "(?i)consent", "[", "1.2.840.10008.5.1.4.1.1.77.1.4",
)


def _datasets() -> list[Dataset]:
    from pydicom import dcmread

    out = []
    for path in sorted((_harness.REPO / "sample_data").rglob("*.dcm"))[:4]:
        try:
            out.append(dcmread(path, stop_before_pixels=True))
        except Exception:
            pass
    odd = Dataset()  # empty, multi-valued, sequence-valued and oddly typed elements
    odd.Modality = ""
    odd.ImageType = ["DERIVED", "SECONDARY", ""]
    odd.Rows = 0
    odd.SeriesDescription = "Consent \u00e9"
    odd.AnatomicRegionSequence = Sequence([Dataset()])
    out += [Dataset(), odd]
    return out


DATASETS = _datasets()


def TestOneInput(data: bytes) -> None:
    try:
        _text, rules = _harness.json_input(data, KEYS)
    except ValueError:
        return  # not JSON: the JSON reader's own error
    try:
        selector = SeriesSelector(rules)
    except RuleError:
        return
    for ds in DATASETS:
        selector.match(ds)
        selector(ds)


if __name__ == "__main__":
    _harness.quiet()
    _harness.main(TestOneInput)
