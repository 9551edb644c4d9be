"""burn-triage as three fragments for Holoscan's distributed engine (``docs/deployment.md``).

::

    ingest ──crops (uint8 tensors)──▶ inference ──findings──▶ reporting
       │                                                         ▲
       └──────── contexts, thumbnails, error records ────────────┘

* ``ingest``: the source (folder, watched folder or C-STORE SCP), decoding, resize + crop to
  uint8 (:mod:`burnscope.operators.preprocess.split`), thumbnails;
* ``inference``: normalisation, the image tower, the burn head; the only fragment that loads
  the model, and it never receives patient data;
* ``reporting``: decision support, report rendering, the sinks and the outbox.

The same operators as the single-fragment graph of :class:`~.app.BurnTriageApp` (which stays the
default run: no UCX, no listening ports); this app is built only when a distributed option
(``--driver``, ``--worker``, ``--fragments``, ``--address``, ``--worker-address``) is given.
What crosses each link is in :mod:`burnscope.common.link`; the operators at the link ends and the
end-of-stream protocol are in :mod:`.link_ops`.

Every process runs :class:`DistributedTriageApp`'s ``__init__`` and ``compose`` (which only
creates the fragment objects) but composes only its own fragments, so the model is loaded only
where ``inference`` runs.
"""

from __future__ import annotations

import logging
import os
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable

from burnscope.operators.holoscan_runtime import holoscan  # noqa: F401  (preloads libcudart)
from holoscan.conditions import PeriodicCondition
from holoscan.core import Application, Fragment
from holoscan.schedulers import EventBasedScheduler

from burnscope.common.link import AcceptedFile
from burnscope.operators.burn_severity.operator import BurnSeverityOp
from burnscope.operators.decision_support.operator import DecisionSupportOp
from burnscope.operators.flow.ledger import RunLedger
from burnscope.operators.flow.monitor import RunMonitor, StopRequest
from burnscope.operators.flow.operator import RunMonitorOp
from burnscope.operators.inference.operator import InferenceOp
from burnscope.operators.report.core import LONG_RUNNING_MAX_STUDIES, ReportEmitter
from burnscope.operators.report.operator import ReportEmitterOp
from burnscope.operators.sinks.operator import ErrorSinkOp, FolderSinkOp, NetworkSinkOp

from .app import BurnTriageApp, finding_label, open_journal
from .counting_sink import CountingSinkOp
from .link_ops import (
    FRAGMENTS,
    INFERENCE,
    INGEST,
    REPORTING,
    FindingsLinkOp,
    InferenceControlOp,
    InferenceLinkOp,
    IngestControlOp,
    IngestLinkOp,
    LinkStats,
    ReportingControlOp,
    ReportingJoinOp,
)

log = logging.getLogger(__name__)

#: Set for every process of a distributed run unless already in the environment. UCX's TCP
#: segments must hold Holoscan's 127 KiB serialisation buffer (Holoscan raises them only for a
#: single-process run; with 8 KB segments a pickled message over ~8 KB corrupts the heap); the
#: deadlock timeout is only the shut-down delay once a fragment has stopped itself; a worker
#: tries to reach its driver once a second for two minutes, not Holoscan's ten seconds (hosts
#: start in any order, and a worker that gives up leaves the driver waiting for ever).
ENVIRONMENT_DEFAULTS = {
    "UCX_TCP_TX_SEG_SIZE": "128k",
    "UCX_TCP_RX_SEG_SIZE": "128k",
    "HOLOSCAN_STOP_ON_DEADLOCK_TIMEOUT": "2000",
    "HOLOSCAN_MAX_CONNECTION_RETRY_COUNT": "120",
}


def apply_environment_defaults(environ: dict[str, str] | None = None) -> dict[str, str]:
    """Set :data:`ENVIRONMENT_DEFAULTS` where unset; return what was set."""
    environ = os.environ if environ is None else environ
    added = {k: v for k, v in ENVIRONMENT_DEFAULTS.items() if k not in environ}
    environ.update(added)
    return added


@dataclass
class DistributedOptions:
    """Holoscan's distributed options, as ``burnscope run/serve burn-triage`` accepts them."""

    driver: bool = False
    worker: bool = False
    address: str | None = None
    worker_address: str | None = None
    fragments: str | None = None

    @property
    def enabled(self) -> bool:
        return bool(self.driver or self.worker or self.address or self.worker_address or self.fragments)

    def local_fragments(self) -> tuple[str, ...]:
        """The fragments this process runs (``--fragments``; all when not given or ``all``; none
        for a driver that is not also a worker: it only schedules)."""
        if self.driver and not self.worker:
            return ()
        if not self.fragments or self.fragments.strip() == "all":
            return FRAGMENTS
        names = tuple(n.strip() for n in self.fragments.split(",") if n.strip())
        unknown = [n for n in names if n not in FRAGMENTS]
        if unknown:
            raise ValueError(f"--fragments: unknown fragment(s) {', '.join(unknown)} "
                             f"(the fragments are {', '.join(FRAGMENTS)}, or all)")
        return names

    def validate(self) -> None:
        self.local_fragments()
        if self.worker and not self.driver and not self.address:
            raise ValueError("--worker needs --address HOST:PORT of the driver")
        if (self.fragments and not self.fragments.strip() == "all" and not self.worker):
            raise ValueError("--fragments needs --worker (this process runs those fragments)")

    @property
    def local(self) -> bool:
        """All fragments in this process with no driver or worker role (``--fragments all`` alone):
        Holoscan's local mode, which connects the fragments over UCX on this host without its
        driver's gRPC service (no fixed port 57777, so two such processes can share a host)."""
        return not (self.driver or self.worker or self.address or self.worker_address)

    def argv(self, program: str = "burnscope") -> list[str]:
        """The command line given to Holoscan: only these options (never the app's own)."""
        out = [program]
        if self.local:
            return out
        if self.driver:
            out.append("--driver")
        if self.worker:
            out.append("--worker")
        if self.address:
            out += ["--address", self.address]
        if self.worker_address:
            out += ["--worker-address", self.worker_address]
        if self.fragments:
            out += ["--fragments", self.fragments]
        if not (self.driver or self.worker):  # --address alone: the driver and a worker here
            out += ["--driver", "--worker"]
        return out


class SourceLedger:
    """What the ingest fragment's source reports to (it calls ``accept``, ``tick``, ``finish``
    as on a :class:`~burnscope.operators.flow.ledger.RunLedger`).

    Ticks and the end are counted here: the ingest control operator sends the end of stream
    once the source has finished and every tick has crossed. Accepted files go to the run's
    ledger: straight, when ``reporting`` runs in this process (so a lost link lists the very
    images in flight), else with the next intake message (:meth:`take_accepted`).
    """

    def __init__(self, ledger: RunLedger | None = None) -> None:
        import threading

        self.ledger = ledger
        self.ticks = 0
        self.finished = False
        self._queue: list[AcceptedFile] = []
        self._lock = threading.Lock()

    def accept(self, result: Any) -> None:
        if self.ledger is not None:
            self.ledger.accept(result)
            return
        with self._lock:
            self._queue.append(AcceptedFile.of(result))

    def tick(self) -> None:
        with self._lock:
            self.ticks += 1

    def finish(self) -> None:
        with self._lock:
            self.finished = True

    def take_accepted(self) -> list[AcceptedFile]:
        with self._lock:
            out, self._queue = self._queue, []
            return out


def _fragment_scheduler(fragment: Fragment, settings: dict[str, Any]) -> None:
    timeout_ms = int(os.environ.get("HOLOSCAN_STOP_ON_DEADLOCK_TIMEOUT", ENVIRONMENT_DEFAULTS["HOLOSCAN_STOP_ON_DEADLOCK_TIMEOUT"]))
    threads = max(2, int(settings["scheduler"].get("worker_threads", 2)))  # the control operator ticks beside work
    fragment.scheduler(EventBasedScheduler(fragment, name=f"{fragment.name}_scheduler", worker_thread_number=threads,
                                           stop_on_deadlock=True, stop_on_deadlock_timeout=timeout_ms))


def _link_settings(settings: dict[str, Any]) -> dict[str, float]:
    d = settings.get("distributed") or {}
    return {"heartbeat_s": float(d.get("heartbeat_s", 0.5))}


def report_root(settings: dict[str, Any], input_path: Path, output_dir: Path | None) -> Path:
    """The folder the reports mirror (as :meth:`~.app.BurnTriageApp._source_root` finds it from the
    source operator), from the settings alone: ``reporting`` may run where no source is built."""
    src = settings["source"]
    if src["kind"] == "scp":
        spool = (src.get("scp") or {}).get("spool_dir") or (Path(output_dir) / "spool" if output_dir else None)
        return Path(spool).absolute() if spool else input_path
    if src["kind"] == "watch":
        return Path(input_path)
    return input_path if input_path.is_dir() or not input_path.exists() else input_path.parent


class _TriageFragment(Fragment):
    """One fragment of :class:`DistributedTriageApp`: its own scheduler, then :meth:`build`."""

    def __init__(self, app: "DistributedTriageApp", name: str) -> None:
        super().__init__(app, name=name)
        self.owner = app

    def compose(self) -> None:
        _fragment_scheduler(self, self.owner.settings)
        self.build(self.owner, self.owner.settings)

    def build(self, owner: "DistributedTriageApp", s: dict[str, Any]) -> None:
        raise NotImplementedError


class IngestFragment(_TriageFragment):
    """Source, decoding, uint8 crops and thumbnails (see the module docstring)."""

    def __init__(self, app: "DistributedTriageApp", name: str) -> None:
        super().__init__(app, name=name)
        # what BurnTriageApp._source reads
        self.settings = app.settings
        self.input_path = app.input_path
        self.output_dir = app.output_dir
        self.on_progress = app.on_progress
        self.ledger = app.source_ledger  # what BurnTriageApp._source hands the source
        self.stop_request = app.stop_request
        self.journal = app.journal
        self.source: Any = None

    def build(self, owner: "DistributedTriageApp", s: dict[str, Any]) -> None:
        from burnscope.engines.model import load_model_config
        from burnscope.operators.preprocess.core import Preprocessor

        period_ms = float(s["source"].get("period_ms") or 0)
        pacing = [PeriodicCondition(self, recess_period=int(period_ms * 1e6), name="pacing")] if period_ms > 0 else []
        cfg = load_model_config(s["inference"]["model_config"])
        # the crops are made where the single-fragment graph would make its batch (preprocess.device):
        # on a GPU they cross as device tensors, and the float tensor equals that graph's
        preprocessor = Preprocessor.from_config(cfg.get("preprocess_cfg", {}), device=s["preprocess"]["device"])
        # BurnTriageApp._source reads the decode size from its components' preprocessor (no model here)
        self.components = SimpleNamespace(preprocessor=preprocessor)
        source = BurnTriageApp._source(self, pacing)
        self.source = source
        link_op = IngestLinkOp(self, name="ingest_link", preprocessor=preprocessor,
                               keep_thumbnails=bool(s["preprocess"]["keep_thumbnails"]), stats=owner.stats,
                               accepted=owner.source_ledger.take_accepted)
        control = IngestControlOp(self, name="ingest_control", link_op=link_op, source_done=self._source_done,
                                  counters=self._counters, stats=owner.stats, accepted=owner.source_ledger.take_accepted,
                                  **_link_settings(s))
        self.add_flow(source, link_op, {("images", "images"), ("errors", "errors")})
        self.add_operator(control)
        owner.ops.update({source.name: source, link_op.name: link_op, control.name: control})

    def _source_done(self) -> tuple[bool, int]:
        return self.ledger.finished, self.ledger.ticks

    def _counters(self) -> dict[str, Any]:
        src = self.source
        return {
            "files": int(getattr(src, "files_total", getattr(src, "files_done", 0))),
            "skipped_by_selection": int(getattr(src, "files_skipped", 0)),
            "images": int(src.images_emitted),
            "errors": int(src.errors_emitted),
            "files_not_started": int(getattr(src, "files_not_started", 0)),
        }


class InferenceFragment(_TriageFragment):
    """Normalisation, image tower, burn head; loads the model (see the module docstring)."""

    def build(self, owner: "DistributedTriageApp", s: dict[str, Any]) -> None:
        from .app import build_components

        components = owner.components or build_components(s, owner.model)
        owner.components = components
        pending: deque = deque()
        link_in = InferenceLinkOp(self, name="inference_link", preprocessor=components.preprocessor, pending=pending)
        tower = InferenceOp(self, name="biomedclip", engine=components.engine)
        head = BurnSeverityOp(self, name="burn_diagnosis", head=components.head)
        link_out = FindingsLinkOp(self, name="findings_link", pending=pending, stats=owner.stats,
                                  model_info=components.model_info, head=getattr(components.head, "name", "zero-shot"),
                                  count=REPORTING not in owner.local)
        control = InferenceControlOp(self, name="inference_control", findings_op=link_out, stats=owner.stats,
                                     **_link_settings(s))
        self.add_flow(link_in, tower, {("batch", "batch")})
        self.add_flow(tower, head, {("embeddings", "embeddings")})
        self.add_flow(head, link_out, {("findings", "findings")})
        self.add_operator(control)
        owner.ops.update({op.name: op for op in (link_in, tower, head, link_out, control)})


class ReportingFragment(_TriageFragment):
    """Decision support, reports, sinks, outbox (see the module docstring)."""

    def build(self, owner: "DistributedTriageApp", s: dict[str, Any]) -> None:
        join = ReportingJoinOp(self, name="reporting_join", stats=owner.stats, on_batch=owner.on_batch)
        decision = DecisionSupportOp(
            self, name="clinical_decision_support", default_case=s["decision_support"].get("default_case") or {}
        )
        emitter = ReportEmitterOp(
            self, name="report_emitter",
            emitter=ReportEmitter(s["report"]["formats"], source_root=str(report_root(s, owner.input_path, owner.output_dir)),
                                  date_format=s["report"]["date_format"],
                                  max_studies=None if s["source"]["kind"] == "folder" else LONG_RUNNING_MAX_STUDIES),
            study_rollup=bool(s["report"].get("study_rollup", False)),
        )
        ledger = owner.ledger
        findings_tally = CountingSinkOp(self, name="findings_tally", port="reports", key=finding_label, ledger=ledger)
        errors_tally = CountingSinkOp(self, name="errors_tally", port="errors", key=lambda e: e.reason, ledger=ledger)
        reports_sink = FolderSinkOp(self, name="emr_integration", out_dir=owner.output_dir, ledger=ledger)
        errors_sink = ErrorSinkOp(self, name="error_records", out_dir=owner.output_dir, ledger=ledger)
        self.add_flow(join, decision, {("findings", "findings")})
        self.add_flow(join, errors_sink, {("errors", "errors")})
        self.add_flow(join, errors_tally, {("errors", "errors")})
        self.add_flow(decision, emitter, {("decisions", "decisions")})
        self.add_flow(emitter, reports_sink, {("reports", "reports")})
        self.add_flow(emitter, findings_tally, {("reports", "reports")})
        delivery = s.get("delivery") or {}
        if delivery.get("destinations"):
            network = NetworkSinkOp(
                self, name="pacs_emr_delivery", outbox_path=delivery.get("outbox") or owner.output_dir / "outbox.sqlite",
                destinations=delivery["destinations"], echo=bool(delivery.get("echo", True)),
                drain_timeout_s=float(delivery.get("drain_timeout_s", 30)), ledger=ledger,
            )
            self.add_flow(emitter, network, {("reports", "reports")})
            owner.ops[network.name] = network
        # ends this fragment once the ledger has drained (as in the single-fragment graph)
        monitor = RunMonitorOp(self, name="run_monitor", monitor=owner.monitor,
                               period_s=float((s.get("run") or {}).get("monitor_period_s", 0.05)))
        self.add_operator(monitor)
        control = ReportingControlOp(self, name="reporting_control", join=join, stats=owner.stats,
                                     on_end=owner.on_end, period_s=0.1)
        self.add_operator(control)
        owner.tallies = {"findings": findings_tally, "errors": errors_tally}
        owner.ops.update({op.name: op for op in (join, decision, emitter, reports_sink, errors_sink, control, monitor)})


class DistributedTriageApp(Application):
    """burn-triage as fragments ``ingest``, ``inference``, ``reporting``.

    Parameters:
        settings, input_path, output_dir, on_progress: as for :class:`~.app.BurnTriageApp`.
        options: :class:`DistributedOptions` (only these reach Holoscan's argument parser).
        model: the model (``-m``), loaded only by the process that runs ``inference``.
        components: already built cores (tests); None: built in the inference fragment.

    After ``run()``: ``stats`` (:class:`~.link_ops.LinkStats`), ``ops`` of the local fragments.
    """

    def __init__(
        self,
        settings: dict[str, Any],
        input_path: str | os.PathLike,
        output_dir: str | os.PathLike | None,
        options: DistributedOptions,
        model: str | None = None,
        components: Any = None,
        on_progress: Callable[..., None] | None = None,
        stop: StopRequest | None = None,
    ) -> None:
        super().__init__(options.argv())
        self.settings = settings
        self.input_path = Path(input_path) if input_path is not None else Path(".")
        self.output_dir = Path(output_dir) if output_dir is not None else None
        self.distributed = options
        self.model = model
        self.components = components
        self.on_progress = on_progress
        self.name = "burn_triage"
        self.stats = LinkStats()
        self.ops: dict[str, Any] = {}
        self.tallies: dict[str, Any] = {}
        self.local = options.local_fragments()
        self.ended = False
        self.stop_request = stop if stop is not None else StopRequest()
        self.hung = False  # set when a forced stop gave up waiting for the graph (runner._run_with_signals)
        here = set(self.local)
        # the intake journal is marked as reports settle: only where both ends run
        self.journal = open_journal(settings, self.output_dir) if {INGEST, REPORTING} <= here else None
        delivery = settings.get("delivery") or {}
        # The run's ledger lives with the reporting fragment (its sinks settle there).
        self.ledger = RunLedger(deliveries=self.output_dir is not None and bool(delivery.get("destinations")),
                                on_file_done=self._file_done)
        run = settings.get("run") or {}
        self.monitor = RunMonitor(self.ledger, self.stop_request, grace_s=float(run.get("grace_s", 30.0)),
                                  stall_timeout_s=run.get("stall_timeout_s", 600.0))
        self.source_ledger = SourceLedger(self.ledger if REPORTING in here else None)

    def _file_done(self, path: str, outcome: str) -> None:
        """Every image of ``path`` has settled: the intake journal need not offer it again."""
        if self.journal is not None:
            self.journal.settle(path, outcome)

    @property
    def journal_failures(self) -> int:
        return BurnTriageApp.journal_failures.fget(self)

    # the reporting fragment's hooks into the ledger
    def on_batch(self, intake: Any) -> None:
        """A batch was joined: files accepted on another host are accepted here; one tick."""
        for accepted in intake.accepted:
            self.ledger.accept(accepted)
        self.ledger.tick()

    def on_end(self, eos: Any) -> None:
        """Ingest's end of stream has come and every batch was joined: the source has finished."""
        for accepted in eos.accepted:
            self.ledger.accept(accepted)
        self.ledger.finish()
        self.ended = True

    def compose(self) -> None:
        ingest = IngestFragment(self, INGEST)
        inference = InferenceFragment(self, INFERENCE)
        reporting = ReportingFragment(self, REPORTING)
        self.add_flow(ingest, inference, {("ingest_link.crops", "inference_link.crops"),
                                          ("ingest_control.control", "inference_control.ingest")})
        self.add_flow(ingest, reporting, {("ingest_link.intake", "reporting_join.intake"),
                                          ("ingest_link.thumbs", "reporting_join.thumbs"),
                                          ("ingest_control.control", "reporting_control.ingest")})
        self.add_flow(inference, reporting, {("findings_link.findings", "reporting_join.findings"),
                                             ("inference_control.control", "reporting_control.inference")})


__all__ = [
    "ENVIRONMENT_DEFAULTS", "DistributedOptions", "DistributedTriageApp", "InferenceFragment", "IngestFragment",
    "ReportingFragment", "apply_environment_defaults",
]
