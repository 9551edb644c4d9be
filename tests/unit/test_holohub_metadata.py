"""Every operator and application folder carries a HoloHub metadata.json that HoloHub's own schema
accepts (validated the way HoloHub's utilities/metadata/metadata_validator.py does it)."""

from __future__ import annotations

import json

import pytest
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError
from referencing import Registry
from referencing.jsonschema import DRAFT202012
from fixtures import REPO

SCHEMAS = REPO / "tests" / "fixtures" / "holohub"
OPERATOR_DIRS = sorted(p.parent for p in (REPO / "operators").glob("*/operator.py"))
APPLICATION_DIRS = sorted(p.parent for p in (REPO / "applications").glob("*/app.py"))


def _validator(kind: str) -> Draft202012Validator:
    base = json.loads((SCHEMAS / "project.schema.json").read_text())
    registry = Registry().with_resource(base["$id"], DRAFT202012.create_resource(base))
    return Draft202012Validator(json.loads((SCHEMAS / f"{kind}.schema.json").read_text()), registry=registry)


def test_the_folders_are_found():
    assert len(OPERATOR_DIRS) >= 7 and [p.name for p in APPLICATION_DIRS] == ["burn_triage"]


@pytest.mark.parametrize("folder", OPERATOR_DIRS + APPLICATION_DIRS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_metadata_is_valid_against_holohubs_schema(folder):
    kind = "operator" if folder.parent.name == "operators" else "application"
    data = json.loads((folder / "metadata.json").read_text())
    _validator(kind).validate(data)
    entry = data[kind]
    assert entry["holoscan_sdk"]["minimum_required_version"] == "4.6.0"
    if kind == "operator":  # the named operator exists in the folder
        assert f"class {entry['name']}(" in (folder / "operator.py").read_text()


def test_the_validator_rejects_what_holohub_rejects():
    data = json.loads((REPO / "operators" / "inference" / "metadata.json").read_text())
    del data["operator"]["ranking"]
    with pytest.raises(ValidationError, match="ranking"):
        _validator("operator").validate(data)
    data = json.loads((REPO / "applications" / "burn_triage" / "metadata.json").read_text())
    data["application"]["platforms"] = ["riscv"]
    with pytest.raises(ValidationError):
        _validator("application").validate(data)
