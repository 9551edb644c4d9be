"""burn-triage settings: one schema, unknown keys caught with a suggestion, one set of defaults."""

from __future__ import annotations

import pytest
import yaml

from burnscope.applications.burn_triage import schema
from burnscope.applications.burn_triage.settings import DEFAULT_CONFIG, SettingsError, load_settings
from fixtures import REPO


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"sourse": {"kind": "folder"}}, "sourse: unknown key; did you mean source?"),
        ({"source": {"batch_sise": 3}}, "source.batch_sise: unknown key; did you mean batch_size?"),
        ({"source": {"scp": {"ae_titel": "X"}}}, "source.scp.ae_titel: unknown key; did you mean ae_title?"),
        ({"delivery": {"destinations": [{"name": "p", "kind": "fhir", "url": "http://x", "timout_s": 3}]}},
         "delivery.destinations[0].timout_s: unknown key; did you mean timeout_s?"),
        ({"inference": {"precision": "fp9"}}, "inference.precision: unknown precision 'fp9'; choose one of:"),
        ({"source": {"batch_size": 0}}, "source.batch_size: Input should be greater than or equal to 1 (got 0)"),
        ({"source": {"scp": {"ae_title": "A" * 17}}}, "source.scp.ae_title: must be 1–16 characters"),
        ({"source": {"scp": {"bind_address": "everywhere"}}}, "source.scp.bind_address: must be an IP address"),
        ({"report": {"formats": ["json", "docx"]}}, "report.formats: unknown format(s) docx"),
        ({"delivery": {"destinations": [{"name": "pacs", "kind": "cstore"}]}}, "needs host, port"),
        ({"burn_severity": {"abstain_threshold": 1.5}}, "burn_severity.abstain_threshold: Input should be less"),
    ],
)
def test_bad_settings_name_the_key(overrides, message):
    with pytest.raises(SettingsError) as excinfo:
        load_settings(overrides=overrides)
    assert message in str(excinfo.value)


def test_every_problem_is_reported_at_once():
    with pytest.raises(SettingsError) as excinfo:
        load_settings(overrides={"source": {"batch_sise": 3, "workers": 0}, "sheduler": {}})
    assert len(str(excinfo.value).splitlines()) == 3


def test_malformed_yaml_is_one_line_naming_the_place(tmp_path):
    bad = tmp_path / "site.yaml"
    bad.write_text("source:\n  kind: folder\n   batch_size: [8\n")
    with pytest.raises(SettingsError) as excinfo:
        load_settings(bad)
    text = str(excinfo.value)
    assert "\n" not in text and "malformed YAML at line" in text and str(bad) in text


def test_a_yaml_list_is_not_a_config(tmp_path):
    bad = tmp_path / "site.yaml"
    bad.write_text("- source\n")
    with pytest.raises(SettingsError, match="expected a mapping"):
        load_settings(bad)


def test_config_yaml_holds_exactly_the_schema_defaults():
    shipped = yaml.safe_load(DEFAULT_CONFIG.read_text())
    assert schema.validate_settings(shipped) == schema.validate_settings({})


def test_config_reference_in_the_docs_is_generated_from_the_schema():
    assert (REPO / "docs" / "configuration.md").read_text() == schema.reference_markdown()


def test_destinations_keep_only_the_keys_given():
    settings = load_settings(overrides={"delivery": {"destinations": [{"name": "emr", "kind": "fhir", "url": "http://h"}]}})
    assert settings["delivery"]["destinations"] == [{"name": "emr", "kind": "fhir", "url": "http://h"}]
