"""Package layering: what may import what (docs/architecture.md, "Packages and imports").

Every ``burnscope.*`` import in every module is read with ``ast`` (function-level, lazy imports
included), so a cycle cannot hide behind an import placed inside a function.
"""

from __future__ import annotations

import ast
from pathlib import Path

from fixtures import REPO

#: Package → the burnscope packages its modules may import (besides itself).
ALLOWED = {
    "common": set(),
    "engines": {"common"},
    "operators": {"common", "engines"},
    "lifecycle": {"common", "engines", "operators"},
    "applications": {"common", "engines", "operators", "lifecycle", "benchmarks"},
    "benchmarks": {"common", "engines", "operators", "lifecycle", "applications"},
}
#: Deprecated re-export shims kept for one release (they import their new home).
SHIMS = {"operators/messages.py", "operators/gpu.py"}


def _burnscope_imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        found += [(node.lineno, n) for n in names if n.startswith("burnscope.")]
    return found


def _modules(package: str) -> list[Path]:
    root = REPO / package
    return sorted(p for p in root.rglob("*.py") if "__pycache__" not in p.parts) if root.is_dir() else []


def test_every_package_imports_only_the_layers_below_it():
    violations = []
    for package, allowed in ALLOWED.items():
        for path in _modules(package):
            rel = path.relative_to(REPO).as_posix()
            for line, name in _burnscope_imports(path):
                target = name.split(".")[1]
                if target != package and target not in allowed and rel not in SHIMS:
                    violations.append(f"{rel}:{line} imports {name}")
    assert not violations, "layering broken:\n" + "\n".join(violations)


def test_applications_and_benchmarks_meet_only_at_the_cli():
    # benchmarks drive the applications; only the CLI (which runs the benchmarks) imports them back
    back = [
        f"{p.relative_to(REPO)}:{line}"
        for p in _modules("applications")
        if "cli" not in p.relative_to(REPO / "applications").parts[:1] and p.name != "cli.py"
        for line, name in _burnscope_imports(p)
        if name.startswith("burnscope.benchmarks")
    ]
    assert not back, "applications (other than the CLI) import benchmarks: " + ", ".join(back)


def test_the_walk_sees_lazy_imports(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from burnscope.operators.report import core\n")
    assert _burnscope_imports(module) == [(2, "burnscope.operators.report")]
