"""Every command the README and the docs show is a command burnscope has, with options it
accepts; the ones that need no model, server or GPU are run and must succeed.

Commands are taken from the fenced code blocks (``burnscope ...`` lines, continuations joined,
comments and pipes cut); ``make`` lines must name a target the Makefile has.
"""

from __future__ import annotations

import re
import shlex

import pytest
import typer
from typer._click.core import Context
from typer._click.exceptions import NoSuchOption, UsageError

from burnscope.applications.cli import app as cli_app
from fixtures import REPO, SAMPLE_DATA

DOCS = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md")), *sorted((REPO / "applications").glob("*/README.md"))]
_FENCE = re.compile(r"^```[^\n]*\n(.*?)^```", re.S | re.M)


def _command_lines(text: str) -> list[str]:
    lines = []
    for block in _FENCE.findall(text):
        joined = re.sub(r"\\\n\s*", " ", block)
        for line in joined.splitlines():
            line = line.strip().removeprefix("$ ")
            line = re.sub(r"^(\S+=\S+\s+)+", "", line)  # VAR=value prefixes
            if re.match(r"^(\.venv/bin/|\S*/)?burnscope\s", line) or line.startswith("make "):
                line = re.split(r"\s+#\s|\s\|\s|\s&&\s|\s>\s", line)[0].strip()
                # synopsis notation: [optional] parts are checked like the rest, <placeholders> are words
                lines.append(re.sub(r"<[^>]*>", "VALUE", line).replace("[", "").replace("]", ""))
    return lines


def _documented() -> list[tuple[str, str]]:
    found = []
    for doc in DOCS:
        for line in _command_lines(doc.read_text(encoding="utf-8")):
            found.append((str(doc.relative_to(REPO)), line))
    return found


DOCUMENTED = _documented()


def test_the_docs_show_commands_at_all():
    commands = [line for _, line in DOCUMENTED if not line.startswith("make ")]
    assert len(commands) >= 20
    assert any(line.endswith("run burn-triage -i sample_data -o out") or " run burn-triage " in line for line in commands)


def _resolve(args: list[str]):
    """The (typer/click) command the words name, its path, and the arguments left for it."""
    command = typer.main.get_command(cli_app)
    path: list[str] = []
    rest = list(args)
    while hasattr(command, "get_command") and rest and not rest[0].startswith("-"):
        sub = command.get_command(Context(command), rest[0])
        if sub is None:
            raise AssertionError(f"`burnscope {' '.join(path + rest[:1])}` is not a command")
        path.append(rest.pop(0))
        command = sub
    return command, path, rest


@pytest.mark.parametrize(("doc", "line"), DOCUMENTED, ids=[f"{d}:{l[:60]}" for d, l in DOCUMENTED])
def test_documented_command_parses(doc, line):
    words = shlex.split(line)
    if words[0] == "make":
        makefile = (REPO / "Makefile").read_text()
        for target in words[1:]:
            if not target.startswith("-") and "=" not in target:
                assert re.search(rf"^{re.escape(target)}:", makefile, re.M), f"{doc}: make {target}: no such target"
        return
    command, path, rest = _resolve(words[1:])
    try:
        command.make_context(" ".join(["burnscope", *path]), rest)
    except NoSuchOption as exc:
        raise AssertionError(f"{doc}: `{line}`: {exc.format_message()}") from None
    except UsageError as exc:  # placeholders (DIR, N) and left-out required options are fine in docs
        if "unexpected extra argument" in exc.format_message():
            raise AssertionError(f"{doc}: `{line}`: {exc.format_message()}") from None


def test_the_commands_that_need_nothing_run(tmp_path):
    from typer.testing import CliRunner

    runner = CliRunner()
    result = runner.invoke(cli_app, ["info", "--json"])
    assert result.exit_code == 0, result.output
    case = tmp_path / "case.json"
    case.write_text('{"age_years": 40, "weight_kg": 70, "hours_since_injury": 2, "burns": '
                    '[{"region": "anterior_trunk", "depth": "deep_partial_thickness", "fraction": 0.5}]}')
    result = runner.invoke(cli_app, ["decide", str(case), "--json"])
    assert result.exit_code == 0 and '"tbsa_percent": 9.0' in result.output, result.output
    result = runner.invoke(cli_app, ["inspect", str(SAMPLE_DATA / "study-001"), "--json"])
    assert result.exit_code == 0, result.output
    for words in sorted({tuple(shlex.split(line)[1:3]) for _, line in DOCUMENTED if line.startswith("burnscope ")}):
        _, path, _ = _resolve(list(words))
        result = runner.invoke(cli_app, [*path, "--help"])
        assert result.exit_code == 0, (path, result.output)
