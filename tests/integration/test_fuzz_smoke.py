"""A short fuzz run of every harness (``fuzz/``): about 3 s each from the seed corpora.

The long campaign (≥ 1,000,000 executions per harness) is ``fuzz/campaign.py --runs 1000000``;
its figures are in docs/benchmarks/fuzzing.md.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from fixtures import REPO

pytest.importorskip("atheris")
FUZZ = REPO / "fuzz"


@pytest.mark.fuzz
def test_every_harness_runs_clean_for_a_few_seconds(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(FUZZ / "campaign.py"), "--seconds", "3", "--jobs", "2", "--timeout", "20", "--max-crashes", "1",
         "--corpus", str(tmp_path / "corpus"), "--out", str(tmp_path / "out")],
        capture_output=True, text=True, timeout=170,
    )
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    rows = {row["harness"]: row for row in summary["harnesses"]}
    assert set(rows) == {"loader", "photo", "case", "selector", "scp"}, proc.stdout + proc.stderr
    for name, row in rows.items():
        assert row["crashes"] == [], (name, row["crashes"], (tmp_path / "out" / f"{name}.log").read_text()[-3000:])
        assert row["executions"] > 50, row
        assert row["coverage_edges"] and row["coverage_edges"] > 10, row
    assert proc.returncode == 0, proc.stdout + proc.stderr
