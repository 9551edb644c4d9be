"""burn-triage: a folder of DICOM images in, a clinical report per image out.

The graph mirrors the product diagram::

    medical_images ─images─▶ imaging ─batch─▶ biomedclip ─embeddings─▶ burn_diagnosis
          │                                                                │ findings
          └─errors─▶ error_records          clinical_decision_support ◀────┘
                                                   │ decisions
                                            report_emitter ─reports─▶ emr_integration

The heavy objects (model, engine, prompt embeddings) are built once by
:func:`build_components` and handed to the operators, so a benchmark can run the graph many
times without reloading the model, and an integrator can reuse them in a graph of their own.

Beside the data path, every run keeps a :class:`~burnscope.operators.flow.ledger.RunLedger`
(the source accepts each image there, the sinks settle it) and a ``run_monitor``
(:class:`~burnscope.operators.flow.operator.RunMonitorOp`) that ends the graph once every message
has drained, or on a stop request after in-flight work has drained (docs/reliability.md). The
watch and SCP sources keep an intake journal (``<output>/journal.sqlite``) so that a restart
after a crash processes what was acknowledged but not reported.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from burnscope.operators.holoscan_runtime import holoscan  # noqa: F401  (preloads libcudart)
from holoscan.conditions import PeriodicCondition
from holoscan.core import Application
from holoscan.schedulers import EventBasedScheduler, GreedyScheduler

from burnscope.operators.burn_severity.operator import BurnSeverityOp
from burnscope.operators.decision_support.operator import DecisionSupportOp
from burnscope.operators.dicom_loader.operator import (
    DicomFolderSourceOp,
    DicomStoreSCPSourceOp,
    DicomWatchSourceOp,
)
from burnscope.operators.flow.ledger import RunLedger
from burnscope.operators.flow.monitor import RunMonitor, StopRequest
from burnscope.operators.flow.operator import RunMonitorOp
from burnscope.operators.inference.operator import InferenceOp
from burnscope.operators.preprocess.operator import PreprocessOp
from burnscope.operators.report.core import LONG_RUNNING_MAX_STUDIES, ReportEmitter
from burnscope.operators.report.operator import ReportEmitterOp
from burnscope.operators.sinks.operator import ErrorSinkOp, FolderSinkOp, NetworkSinkOp

from .counting_sink import CountingSinkOp

log = logging.getLogger(__name__)


@dataclass
class TriageComponents:
    """The pure cores the graph wraps, built once (see :func:`build_components`)."""

    bundle: Any  # engines.model.ModelBundle
    engine: Any  # engines.base.Engine
    preprocessor: Any  # operators.preprocess.core.Preprocessor
    head: Any  # operators.burn_severity.core head
    #: The emergency lane's own engine (``burnscope serve``; on a GPU, on a high-priority stream).
    stat_engine: Any = None

    @property
    def model_info(self):
        return self.engine.model_info


def build_components(settings: dict[str, Any], model: str | None = None, batch_sizes: Any = None,
                     stat_engine: bool = False) -> TriageComponents:
    """Load the model, build the engine (warmed up), the preprocessor and the burn head.

    ``batch_sizes``: the engine's compiled sizes (default: 1 and ``source.batch_size``);
    ``stat_engine``: also build the emergency lane's engine (same model and sizes; on a GPU its
    work goes on a high-priority CUDA stream)."""
    from burnscope.engines.base import create_engine
    from burnscope.engines.model import load_biomedclip
    from burnscope.operators.burn_severity.core import load_head
    from burnscope.operators.preprocess.calibration import calibration_for
    from burnscope.operators.preprocess.core import Preprocessor

    from .settings import resolve_engine_choice

    inference = settings["inference"]
    backend, precision = resolve_engine_choice(inference)
    bundle = load_biomedclip(model=model, config=inference["model_config"])
    sizes = sorted(batch_sizes or {1, int(settings["source"]["batch_size"])})

    def make_engine(**extra: Any) -> Any:
        return create_engine(
            bundle,
            backend=backend,
            precision=precision,
            device=inference["device"],
            batch_sizes=sizes,
            # static INT8: calibrated on the installed sample photographs when no model is cached yet
            **({"calibration": calibration_for(bundle.config)} if backend != "torch" else {}),
            **({"compile": True} if backend == "torch" and inference.get("compile") else {}),
            **extra,
        )

    engine = make_engine()
    # Once, at the run's own batch size: the other sizes a run meets are warm after their first batch.
    engine.warmup(iterations=1, sizes=[max(sizes) if batch_sizes else int(settings["source"]["batch_size"])])
    lane = make_engine(high_priority=True).warmup(iterations=1, sizes=[1]) if stat_engine else None
    preprocessor = Preprocessor.from_config(
        bundle.preprocess_cfg, device=settings["preprocess"]["device"], dtype=settings["preprocess"]["dtype"]
    )
    severity = settings["burn_severity"]
    head = load_head(bundle, severity.get("head"), abstain_threshold=float(severity["abstain_threshold"]))
    return TriageComponents(bundle=bundle, engine=engine, preprocessor=preprocessor, head=head, stat_engine=lane)


class BurnTriageApp(Application):
    """The burn-triage graph.

    Parameters:
        settings: merged settings (``applications/burn_triage/config.yaml`` + overrides).
        input_path: folder (recursive) or file(s) of DICOM images; the watched folder for
            ``source.kind: watch``; unused for ``scp`` (reports are named after the spooled files).
        output_dir: where reports and ``errors.jsonl`` go; ``None`` runs headless (reports are
            rendered but only counted, as the benchmark does).
        components: the cores from :func:`build_components`.
        on_progress: ``(files_done, files_total, result)`` callback from the loader.
        on_ready: ``() -> None``, called once a watched folder or C-STORE source runs (the SCP
            listens): the moment to tell the user it is listening.
        stop: a :class:`StopRequest`; when set (a signal handler does it) the source stops
            taking input and the run ends once what is in flight has drained (``run.grace_s``).

    ``ledger``, ``monitor`` and ``journal`` (watch/scp with an output folder) are readable while
    and after the app runs. Opening the journal can raise
    :class:`~burnscope.operators.dicom_loader.journal.JournalError` (locked, corrupt).
    """

    def __init__(
        self,
        settings: dict[str, Any],
        input_path: str | os.PathLike,
        output_dir: str | os.PathLike | None,
        components: TriageComponents,
        on_progress: Callable[..., None] | None = None,
        stop: StopRequest | None = None,
        on_ready: Callable[[], None] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.on_ready = on_ready
        self.settings = settings
        self.input_path = Path(input_path)
        self.output_dir = Path(output_dir) if output_dir is not None else None
        self.components = components
        self.on_progress = on_progress
        self.name = "burn_triage"
        self.ops: dict[str, Any] = {}
        self.stop_request = stop if stop is not None else StopRequest()
        self.hung = False  # set when a forced stop gave up waiting for the graph (see runner)
        self.journal = open_journal(settings, self.output_dir)
        delivery = settings.get("delivery") or {}
        self.ledger = RunLedger(
            deliveries=self.output_dir is not None and bool(delivery.get("destinations")),
            on_file_done=self.journal.settle if self.journal is not None else None,
        )
        run = settings.get("run") or {}
        self.monitor = RunMonitor(
            self.ledger, self.stop_request,
            grace_s=float(run.get("grace_s", 30.0)), stall_timeout_s=run.get("stall_timeout_s", 600.0),
        )

    @property
    def journal_failures(self) -> int:
        """Files whose done mark failed (offered again after a restart; their reports are unchanged then)."""
        return self.journal.failures if self.journal is not None else 0

    def compose(self) -> None:
        s = self.settings
        c = self.components
        # period_ms > 0 paces the source (one batch per period) so latency is measured unloaded;
        # 0 lets it run ahead, and latency then includes the wait in the graph's queues.
        period_ms = float(s["source"].get("period_ms") or 0)
        pacing = [PeriodicCondition(self, recess_period=int(period_ms * 1e6), name="pacing")] if period_ms > 0 else []
        ledger = self.ledger
        self.add_operator(RunMonitorOp(self, name="run_monitor", monitor=self.monitor,
                                       period_s=float((s.get("run") or {}).get("monitor_period_s", 0.05))))
        source = self._source(pacing)
        imaging = PreprocessOp(
            self, name="imaging", preprocessor=c.preprocessor, keep_thumbnails=s["preprocess"]["keep_thumbnails"]
        )
        biomedclip = InferenceOp(self, name="biomedclip", engine=c.engine)
        diagnosis = BurnSeverityOp(self, name="burn_diagnosis", head=c.head)
        decision = DecisionSupportOp(
            self, name="clinical_decision_support", default_case=s["decision_support"].get("default_case") or {}
        )
        emitter = ReportEmitterOp(
            self,
            name="report_emitter",
            emitter=ReportEmitter(
                s["report"]["formats"],
                # reports mirror the input's folders, so they sort with their source
                source_root=str(self._source_root(source)),
                date_format=s["report"]["date_format"],
                # a watch or SCP run goes on until stopped: bound its per-study state
                max_studies=None if s["source"]["kind"] == "folder" else LONG_RUNNING_MAX_STUDIES,
            ),
            study_rollup=bool(s["report"].get("study_rollup", False)),
        )
        # The tallies feed the run summary; a headless (benchmark) run ends in them.
        headless = self.output_dir is None
        findings_tally = CountingSinkOp(
            self, name="emr_integration" if headless else "findings_tally", port="reports", key=finding_label,
            ledger=ledger, settle="reports" if headless else None,
        )
        errors_tally = CountingSinkOp(
            self, name="error_records" if headless else "errors_tally", port="errors", key=lambda e: e.reason,
            ledger=ledger, settle="errors" if headless else None,
        )
        if headless:
            reports_sink, errors_sink = findings_tally, errors_tally
        else:
            reports_sink = FolderSinkOp(self, name="emr_integration", out_dir=self.output_dir, ledger=ledger)
            errors_sink = ErrorSinkOp(self, name="error_records", out_dir=self.output_dir, ledger=ledger)
            self.add_flow(emitter, findings_tally, {("reports", "reports")})
            self.add_flow(source, errors_tally, {("errors", "errors")})
            delivery = s.get("delivery") or {}
            if delivery.get("destinations"):
                network = NetworkSinkOp(
                    self,
                    name="pacs_emr_delivery",
                    outbox_path=delivery.get("outbox") or self.output_dir / "outbox.sqlite",
                    destinations=delivery["destinations"],
                    echo=bool(delivery.get("echo", True)),
                    drain_timeout_s=float(delivery.get("drain_timeout_s", 30)),
                    max_attempts=delivery.get("max_attempts"),
                    ledger=ledger,
                )
                self.add_flow(emitter, network, {("reports", "reports")})
                self.ops[network.name] = network

        self.add_flow(source, imaging, {("images", "images")})
        self.add_flow(source, errors_sink, {("errors", "errors")})
        self.add_flow(imaging, biomedclip, {("batch", "batch")})
        self.add_flow(biomedclip, diagnosis, {("embeddings", "embeddings")})
        self.add_flow(diagnosis, decision, {("findings", "findings")})
        self.add_flow(decision, emitter, {("decisions", "decisions")})
        self.add_flow(emitter, reports_sink, {("reports", "reports")})
        self.ops.update({
            op.name: op
            for op in (source, imaging, biomedclip, diagnosis, decision, emitter, reports_sink, errors_sink)
        })
        self.tallies = {"findings": findings_tally, "errors": errors_tally}


    def _source_root(self, source: Any) -> Path:
        if isinstance(source, DicomStoreSCPSourceOp):
            return Path(source.scp.spool_dir)
        if isinstance(source, DicomWatchSourceOp):
            return source.watcher.root  # absolute: recovered and new files are named alike
        return self.input_path if self.input_path.is_dir() else self.input_path.parent

    def _source(self, conditions: list[Any]) -> Any:
        """The "Medical Images" box: a folder read once, a watched folder, or a C-STORE SCP."""
        from .decode_paths import loader_options

        src = self.settings["source"]
        decode = loader_options(src, self.components.preprocessor.image_size, gpu=src["kind"] == "folder")
        gpu_jpeg = decode.pop("gpu_jpeg")
        common = dict(name="medical_images", batch_size=src["batch_size"], selector=src.get("select"),
                      ledger=self.ledger, stop=self.stop_request, on_progress=self.on_progress, **decode)
        if src["kind"] == "folder":
            return DicomFolderSourceOp(self, *conditions, input_path=self.input_path,
                                       executor=src.get("executor", "thread"), gpu_jpeg=gpu_jpeg, **common)
        until = dict(stop_after_idle=src.get("stop_after_idle"), max_files=src.get("max_files"), journal=self.journal,
                     on_ready=getattr(self, "on_ready", None))
        if src["kind"] == "watch":
            watch = src.get("watch") or {}
            return DicomWatchSourceOp(
                self, watch_path=self.input_path, poll_interval=float(watch.get("poll_interval", 0.5)),
                settle_seconds=float(watch.get("settle_seconds", 1.0)), **until, **common,
            )
        return DicomStoreSCPSourceOp(self, **scp_options(src, self.output_dir), **until, **common)


def scp_options(source: dict[str, Any], output_dir: Path | None) -> dict[str, Any]:
    """The SCP's settings (``source.scp``, unset ones left out); the spool defaults to
    ``<output>/spool``: durable, so a restart finds what was acknowledged (0700, files 0600).
    ``allow_any_caller`` is left out too: the settings check it, the SCP has nothing to do with it."""
    scp = {k: v for k, v in (source.get("scp") or {}).items() if v is not None and k != "allow_any_caller"}
    if "spool_dir" not in scp and output_dir is not None:
        scp["spool_dir"] = str(Path(output_dir) / "spool")
    return scp


def open_journal(settings: dict[str, Any], output_dir: Path | None, *, service: bool = False) -> Any:
    """The intake journal of a watch or SCP run with an output folder, and of every service
    (``service=True``: ``burnscope serve``, whatever ``source.kind`` says) — ``source.journal``, by
    default ``<output>/journal.sqlite``; None for folder and headless runs. Its
    :meth:`~burnscope.operators.dicom_loader.journal.Journal.settle` is the ledger's ``on_file_done``."""
    src = settings["source"]
    if (src["kind"] == "folder" and not service) or output_dir is None:
        return None
    from burnscope.operators.dicom_loader.journal import FILE_NAME, Journal

    return Journal(src.get("journal") or Path(output_dir) / FILE_NAME)


def finding_label(bundle: Any) -> str | None:
    """The finding label of an image report (``needs_review`` when the head abstained); None for
    study roll-ups, which summarise findings already counted."""
    if getattr(bundle, "kind", "image") != "image":
        return None
    return str(bundle.report.get("finding", {}).get("label", "unknown"))


def configure_scheduler(app: Application, settings: dict[str, Any]) -> None:
    """Greedy (one thread) or event-based (stages overlap across ``worker_threads``).

    The graph is ended by its ``run_monitor`` (``fragment.stop_execution()`` once drained); the
    scheduler's deadlock detection only notices that every operator has stopped. Its timeout
    (``scheduler.stop_on_deadlock_timeout_ms``) makes the detector wait that long with nothing
    ready or running before it believes it, while the monitor's periodic tick counts as work:
    a worker that has taken a job but is not yet counted as running (preempted on a loaded
    machine) can no longer end the run.
    """
    sched = settings["scheduler"]
    timeout_ms = int(sched.get("stop_on_deadlock_timeout_ms", 200))
    if sched["kind"] == "greedy":
        app.scheduler(GreedyScheduler(app, name="scheduler", stop_on_deadlock=True, stop_on_deadlock_timeout=timeout_ms))
    else:
        app.scheduler(
            EventBasedScheduler(app, name="scheduler", worker_thread_number=int(sched["worker_threads"]),
                                stop_on_deadlock=True, stop_on_deadlock_timeout=timeout_ms)
        )
