"""Report formats: one explicit table of what :class:`~.core.ReportEmitter` can render.

Each :class:`ReportFormat` names its file suffix and its renderer as ``"module:function"``,
imported on first use, so the heavy libraries (highdicom, reportlab, fhir.resources) load only
when a format needs them. Integrators add a format of their own with :func:`register`.

A renderer is ``renderer(decision, report_dict, bundle, state) -> None``: it adds its artefact to
``bundle.artefacts`` (and what network sinks send to ``bundle.deliveries``). ``final`` formats
(JSON, text) render last, from the finished report dict; the others render first, and a
failure there costs only their own artefact (it becomes an error record).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Union

from burnscope.common.messages import Decision, ReportBundle

Renderer = Callable[[Decision, dict[str, Any], ReportBundle, dict[str, Any]], None]


@dataclass(frozen=True)
class ReportFormat:
    """A report format: its name (as configs spell it), file suffix and renderer."""

    name: str
    suffix: str
    renderer: Union[str, Renderer]  # "package.module:function" or the function itself
    #: JSON/text: rendered last, from the final report dict (they show the other outputs).
    final: bool = False
    #: Its objects get identifiers planned before rendering (DICOM and FHIR objects, PDF).
    standard: bool = False
    #: ``"module:function"`` ``(decision, report, state) -> planned`` run where the emitter's
    #: per-run counters live, before rendering; the renderer finds the result in
    #: ``state["planned"][name]`` (so rendering may happen in another process).
    planner: Union[str, Callable[..., Any], None] = None

    def load(self) -> Renderer:
        return _resolve(self.renderer)

    def plan(self) -> Callable[..., Any]:
        return _resolve(self.planner)


def _resolve(target: Any) -> Any:
    if callable(target):
        return target
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


_STANDARDS = "burnscope.operators.report.standards"
FORMATS: dict[str, ReportFormat] = {
    f.name: f
    for f in (
        ReportFormat("json", ".json", "burnscope.operators.report.core:render_json_artefact", final=True),
        ReportFormat("txt", ".txt", "burnscope.operators.report.core:render_text_artefact", final=True),
        ReportFormat("pdf", ".pdf", f"{_STANDARDS}:render_pdf_artefact", standard=True),
        ReportFormat("sr", ".sr.dcm", f"{_STANDARDS}:render_sr", standard=True),
        ReportFormat("pdf_dcm", ".pdf.dcm", f"{_STANDARDS}:render_pdf_dcm", standard=True),
        ReportFormat("fhir", ".fhir.json", f"{_STANDARDS}:render_fhir", standard=True),
        # plans its own identifiers (one series per study, verified captures in another)
        ReportFormat("sc", ".sc.dcm", "burnscope.operators.report.secondary_capture:render_sc",
                     planner="burnscope.operators.report.secondary_capture:plan_sc"),
    )
}
#: The formats burnscope ships, in the order reports list their files.
ALL_FORMATS = tuple(FORMATS)
STANDARD_FORMATS = tuple(name for name, f in FORMATS.items() if f.standard)


def register(fmt: ReportFormat) -> None:
    """Add (or replace) a format; its name then works in ``report.formats``."""
    FORMATS[fmt.name] = fmt


def unregister(name: str) -> None:
    FORMATS.pop(name, None)


def get(name: str) -> ReportFormat:
    try:
        return FORMATS[name]
    except KeyError:
        raise ValueError(f"unknown report format {name!r}; known: {', '.join(FORMATS)}") from None


def suffix_rank(suffix: str) -> tuple[int, str]:
    """Order of artefacts in a bundle: the registered formats' order, others after them."""
    order = [f.suffix for f in FORMATS.values()]
    return (order.index(suffix) if suffix in order else len(order), suffix)


__all__ = ["ALL_FORMATS", "FORMATS", "ReportFormat", "Renderer", "STANDARD_FORMATS", "get", "register",
           "suffix_rank", "unregister"]
