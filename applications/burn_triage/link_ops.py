"""Operators at the ends of the fragment links of a distributed burn-triage run.

What each link carries is described in :mod:`burnscope.common.link`. These operators turn the
graph's own messages (``list[ImageRecord]``, ``ImageBatch``, ``list[Finding]``) into link
messages and back, count what they send (:class:`LinkStats`), and run the end-of-stream
protocol: a periodic control operator in every fragment keeps the fragment alive (Holoscan
would otherwise end a fragment that hears nothing for about a second), sends heartbeats and,
once the source is done, an end-of-stream message with the number of batches; every fragment
stops itself (``fragment.stop_execution()``) when it has passed that many batches on.
"""

from __future__ import annotations

import datetime
import logging
import threading
import time
from collections import deque
from typing import Any, Callable

from burnscope.operators.holoscan_runtime import holoscan  # noqa: F401  (preloads libcudart)
from holoscan.conditions import PeriodicCondition
from holoscan.core import ConditionType, IOSpec, Operator, OperatorSpec

from burnscope.common import link
from burnscope.common.messages import Finding, ImageBatch, ImageContext
from burnscope.operators.preprocess.split import crop_batch, normalise_crops

log = logging.getLogger(__name__)

INGEST, INFERENCE, REPORTING = "ingest", "inference", "reporting"
FRAGMENTS = (INGEST, INFERENCE, REPORTING)


class LinkStats:
    """Per process: what crossed each link, when each fragment was last heard, end of stream.

    Thread-safe (operators of several fragments and the watchdog read and write it).
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._lock = threading.Lock()
        self.links: dict[str, dict[str, int]] = {}
        self.heard: dict[str, float] = {}
        self.eos: dict[str, link.LinkControl] = {}
        self.batches: dict[str, int] = {}
        self.remote_links: dict[str, dict[str, dict[str, int]]] = {}
        self.model = None
        self.started_at = clock()

    def sent(self, name: str, payload_bytes: int, images: int = 0) -> None:
        with self._lock:
            row = self.links.setdefault(name, {"messages": 0, "payload_bytes": 0, "images": 0})
            row["messages"] += 1
            row["payload_bytes"] += int(payload_bytes)
            row["images"] += int(images)

    def hear(self, message: link.LinkControl) -> None:
        with self._lock:
            self.heard[message.fragment] = self.clock()
            self.batches[message.fragment] = max(self.batches.get(message.fragment, 0), int(message.batches))
            if message.counters.get("links"):
                self.remote_links[message.fragment] = dict(message.counters["links"])
            if message.end_of_stream:
                self.eos[message.fragment] = message

    def sent_batches(self, fragment: str) -> int:
        """The most batches ``fragment`` said (in a heartbeat) it had sent."""
        with self._lock:
            return self.batches.get(fragment, 0)

    def last_heard(self, fragment: str) -> float | None:
        with self._lock:
            return self.heard.get(fragment)

    def own_links(self, prefix: str) -> dict[str, dict[str, int]]:
        """This process's counts of the links whose name starts with ``prefix`` (sent to the others)."""
        with self._lock:
            return {name: dict(row) for name, row in self.links.items() if name.startswith(prefix)}

    def table(self) -> dict[str, dict[str, Any]]:
        """Per link: messages, payload bytes, images, bytes per image (links sent from other
        processes as their last heartbeat or end of stream reported them)."""
        with self._lock:
            rows = {}
            for remote in self.remote_links.values():
                rows.update(remote)
            rows.update(self.links)
            out = {}
            for name, row in sorted(rows.items()):
                row = dict(row)
                if row["images"]:
                    row["payload_bytes_per_image"] = round(row["payload_bytes"] / row["images"], 1)
                out[name] = row
            return out


def _periodic(fragment: Any, period_s: float, name: str) -> PeriodicCondition:
    return PeriodicCondition(fragment, recess_period=datetime.timedelta(seconds=float(period_s)), name=name)


def _optional_input(spec: OperatorSpec, name: str) -> None:
    """A control input that never blocks ``compute`` (``receive`` gives None when nothing came)
    and never refuses a message: when a heartbeat arrives before the last one was read, the
    older is dropped (Holoscan's default policy faults the receiver, which stalls the link).
    An end of stream is always the sender's last message, so it is never dropped."""
    spec.input(name, policy=IOSpec.QueuePolicy.POP).condition(ConditionType.NONE)


# ---------------------------------------------------------------------------------- ingest
class IngestLinkOp(Operator):
    """Ingest side: decoded images → uint8 crops (to inference) + contexts and thumbnails (to reporting).

    Named inputs:
        images: ``list[ImageRecord]`` from the source.
        errors: ``list[ErrorRecord]`` from the source (the same tick).

    Named outputs:
        crops: tensor map (:func:`~burnscope.common.link.crops_tensormap`) → inference.
        intake: :class:`~burnscope.common.link.LinkIntake` → reporting.
        thumbs: tensor map (:func:`~burnscope.common.link.thumbs_tensormap`) → reporting.

    Every tick is sent, an empty one too (a watched folder's idle poll: a few hundred bytes). Parameter
    ``accepted``: ``() -> list[AcceptedFile]``, the files accepted since the last batch (sent with
    it when the run's ledger is on another host). After ``run()``: ``ticks`` (source messages
    received), ``batches`` (sent).
    """

    def __init__(self, fragment: Any, *args: Any, preprocessor: Any, keep_thumbnails: bool, stats: LinkStats,
                 accepted: Callable[[], list] | None = None, **kwargs: Any) -> None:
        self.preprocessor = preprocessor
        self.accepted = accepted
        self.keep_thumbnails = keep_thumbnails
        self.stats = stats
        self.ticks = 0
        self.batches = 0
        self.images = 0
        self.errors = 0
        self._lock = threading.Lock()
        super().__init__(fragment, *args, **kwargs)

    def setup(self, spec: OperatorSpec) -> None:
        spec.input("images")
        spec.input("errors")
        spec.output("crops")
        spec.output("intake")
        spec.output("thumbs")

    def compute(self, op_input: Any, op_output: Any, context: Any) -> None:
        records = list(op_input.receive("images") or [])
        errors = list(op_input.receive("errors") or [])
        # every tick crosses, empty ones too (as in the single-fragment graph): a transmitter
        # across fragments warns on every tick it sends nothing, and the join counts ticks
        batch = self.batches
        pixels = [r.pixels for r in records]
        crops = link.crops_tensormap(batch, crop_batch(self.preprocessor, pixels), self.preprocessor.image_size)
        intake = link.LinkIntake(batch=batch, contexts=[r.context for r in records], errors=errors,
                                 accepted=self.accepted() if self.accepted is not None else [])
        intake_bytes = link.check_pickled(intake, "ingest → reporting")
        thumbs = link.thumbs_tensormap(batch, self.preprocessor.thumbnails(pixels) if self.keep_thumbnails else None)
        op_output.emit(crops, "crops")
        op_output.emit(intake, "intake")
        op_output.emit(thumbs, "thumbs")
        self.stats.sent("ingest→inference", link.tensormap_bytes(crops), len(records))
        self.stats.sent("ingest→reporting", intake_bytes + link.tensormap_bytes(thumbs), len(records))
        self.images += len(records)
        self.errors += len(errors)
        self.batches += 1
        with self._lock:
            self.ticks += 1


class IngestControlOp(Operator):
    """Keeps the ingest fragment alive, sends heartbeats and, once the source is done, the end of stream.

    Named outputs:
        control: :class:`~burnscope.common.link.LinkControl` → inference and reporting.

    Parameters:
        link_op: the fragment's :class:`IngestLinkOp` (batches sent, ticks received).
        source_done: ``() -> (finished, ticks emitted)`` of the source.
        counters: ``() -> dict`` of the source's counts, sent with the end of stream.
        heartbeat_s: seconds between ticks; every tick sends a heartbeat (or the end of stream).
    """

    def __init__(self, fragment: Any, *args: Any, link_op: IngestLinkOp, source_done: Callable[[], tuple[bool, int]],
                 counters: Callable[[], dict[str, Any]], stats: LinkStats, heartbeat_s: float = 0.5,
                 accepted: Callable[[], list] | None = None, **kwargs: Any) -> None:
        self.accepted = accepted
        self.link_op, self.source_done, self.counters, self.stats = link_op, source_done, counters, stats
        self.heartbeat_s = float(heartbeat_s)
        self.seq = 0
        self.eos_sent = False
        super().__init__(fragment, _periodic(fragment, heartbeat_s, "ingest_control_period"), *args, **kwargs)

    def setup(self, spec: OperatorSpec) -> None:
        spec.output("control")

    def _send(self, op_output: Any, kind: str) -> None:
        self.seq += 1
        msg = link.LinkControl(INGEST, kind, self.seq, self.link_op.batches,
                               {"links": self.stats.own_links(INGEST)})
        if kind == link.END_OF_STREAM:
            msg.counters.update(self.counters())
            msg.accepted = self.accepted() if self.accepted is not None else []
        size = link.check_pickled(msg, "ingest control")
        op_output.emit(msg, "control")
        self.stats.sent("ingest→(inference,reporting) control", size)

    def compute(self, op_input: Any, op_output: Any, context: Any) -> None:
        if self.eos_sent:
            return
        finished, ticks = self.source_done()
        if finished and self.link_op.ticks >= ticks:
            self._send(op_output, link.END_OF_STREAM)
            self.eos_sent = True
            log.info("ingest: end of stream after %d batch(es)", self.link_op.batches)
            self.fragment.stop_execution()
        else:  # every tick: a transmitter across fragments warns about ticks without a message
            self._send(op_output, link.HEARTBEAT)


# ------------------------------------------------------------------------------- inference
class InferenceLinkOp(Operator):
    """Inference side: uint8 crops → the model's input batch (normalised here).

    Named inputs:
        crops: tensor map from :class:`IngestLinkOp`.

    Named outputs:
        batch: :class:`~burnscope.common.messages.ImageBatch` whose contexts are placeholders
            (``link-batch-<n>``): the inference host has no patient data.
    """

    def __init__(self, fragment: Any, *args: Any, preprocessor: Any, pending: deque, **kwargs: Any) -> None:
        self.preprocessor = preprocessor
        self.pending = pending
        super().__init__(fragment, *args, **kwargs)

    def setup(self, spec: OperatorSpec) -> None:
        spec.input("crops")
        spec.output("batch")

    def compute(self, op_input: Any, op_output: Any, context: Any) -> None:
        batch, crops = link.crops_from_tensormap(op_input.receive("crops"))
        self.pending.append(batch)
        contexts = [ImageContext(source=f"link-batch-{batch}", frame_number=i + 1) for i in range(int(crops.shape[0]))]
        op_output.emit(ImageBatch(contexts, normalise_crops(self.preprocessor, crops), None), "batch")


class FindingsLinkOp(Operator):
    """Inference side: ``list[Finding]`` → :class:`~burnscope.common.link.LinkFindings` (no context, no pixels).

    Named inputs:
        findings: from the burn head.

    Named outputs:
        findings: → reporting.
    """

    def __init__(self, fragment: Any, *args: Any, pending: deque, stats: LinkStats, model_info: Any, head: str,
                 count: bool = True, **kwargs: Any) -> None:
        self.pending, self.stats, self.model_info, self.head = pending, stats, model_info, head
        self.count = count  # False where reporting runs in this process (its join counts the link)
        self.forwarded = 0
        super().__init__(fragment, *args, **kwargs)

    def setup(self, spec: OperatorSpec) -> None:
        spec.input("findings")
        spec.output("findings")

    def compute(self, op_input: Any, op_output: Any, context: Any) -> None:
        findings = list(op_input.receive("findings") or [])
        batch = self.pending.popleft()
        msg = link.LinkFindings(
            batch=batch, model=self.model_info, head=findings[0].head if findings else self.head,
            findings=[link.LinkFinding(f.label, dict(f.probabilities), float(f.confidence), bool(f.abstained))
                      for f in findings],
        )
        size = link.check_pickled(msg, "inference → reporting")
        op_output.emit(msg, "findings")
        if self.count:
            self.stats.sent("inference→reporting", size, len(findings))
        self.forwarded += 1


class InferenceControlOp(Operator):
    """Keeps the inference fragment alive; heartbeats to reporting; stops after the end of stream.

    Named inputs:
        ingest: :class:`~burnscope.common.link.LinkControl` from ingest (optional per tick).

    Named outputs:
        control: :class:`~burnscope.common.link.LinkControl` → reporting.
    """

    def __init__(self, fragment: Any, *args: Any, findings_op: FindingsLinkOp, stats: LinkStats,
                 heartbeat_s: float = 0.5, **kwargs: Any) -> None:
        self.findings_op, self.stats = findings_op, stats
        self.heartbeat_s = float(heartbeat_s)
        self.seq = 0
        self.eos_sent = False
        super().__init__(fragment, _periodic(fragment, heartbeat_s, "inference_control_period"), *args, **kwargs)

    def setup(self, spec: OperatorSpec) -> None:
        _optional_input(spec, "ingest")
        spec.output("control")

    def _send(self, op_output: Any, kind: str) -> None:
        self.seq += 1
        msg = link.LinkControl(INFERENCE, kind, self.seq, self.findings_op.forwarded,
                               {"links": self.stats.own_links(INFERENCE)})
        size = link.check_pickled(msg, "inference control")
        op_output.emit(msg, "control")
        self.stats.sent("inference→reporting control", size)

    def compute(self, op_input: Any, op_output: Any, context: Any) -> None:
        msg = op_input.receive("ingest")
        if msg is not None:
            self.stats.hear(msg)
        if self.eos_sent:
            return
        eos = self.stats.eos.get(INGEST)
        if eos is not None and self.findings_op.forwarded >= eos.batches:
            self._send(op_output, link.END_OF_STREAM)
            self.eos_sent = True
            log.info("inference: end of stream after %d batch(es)", self.findings_op.forwarded)
            self.fragment.stop_execution()
        else:  # every tick: a transmitter across fragments warns about ticks without a message
            self._send(op_output, link.HEARTBEAT)


# ------------------------------------------------------------------------------- reporting
class LinkMismatch(RuntimeError):
    """The two inputs of the join are not of the same batch (a message was lost on one link)."""


class ReportingJoinOp(Operator):
    """Reporting side: contexts + thumbnails (from ingest) joined with the findings (from inference).

    Named inputs:
        intake: :class:`~burnscope.common.link.LinkIntake`.
        thumbs: thumbnails tensor map.
        findings: :class:`~burnscope.common.link.LinkFindings`.

    Named outputs:
        findings: ``list[Finding]`` with the real contexts and thumbnails → decision support.
        errors: ``list[ErrorRecord]`` of the loader → the error sinks.

    Batches arrive in order on each link; a batch number that differs between the inputs raises
    :class:`LinkMismatch` (never a report with another image's finding). ``on_batch(intake)``
    is called before the batch is emitted (the run's ledger accepts its images there).
    """

    def __init__(self, fragment: Any, *args: Any, stats: LinkStats, on_batch: Callable[[Any], None] | None = None,
                 **kwargs: Any) -> None:
        self.stats = stats
        self.on_batch = on_batch
        self.joined = 0
        self.images = 0
        self.errors = 0
        super().__init__(fragment, *args, **kwargs)

    def setup(self, spec: OperatorSpec) -> None:
        spec.input("intake")
        spec.input("thumbs")
        spec.input("findings")
        spec.output("findings")
        spec.output("errors")

    def compute(self, op_input: Any, op_output: Any, context: Any) -> None:
        intake = op_input.receive("intake")
        thumbs_batch, thumbs = link.thumbs_from_tensormap(op_input.receive("thumbs"))
        found = op_input.receive("findings")
        if not (intake.batch == thumbs_batch == found.batch):
            raise LinkMismatch(f"batch numbers differ: intake {intake.batch}, thumbnails {thumbs_batch}, "
                               f"findings {found.batch}")
        if len(found.findings) != len(intake.contexts):
            raise LinkMismatch(f"batch {intake.batch}: {len(intake.contexts)} image(s) but "
                               f"{len(found.findings)} finding(s)")
        # counted where it arrives: the sender's count may come after this fragment has ended
        self.stats.sent("inference→reporting", link.pickled_size(found), len(found.findings))
        if found.model is not None:
            self.stats.model = found.model
        thumbs = thumbs if thumbs is not None else [None] * len(intake.contexts)
        findings = [
            Finding(context=ctx, label=f.label, probabilities=f.probabilities, confidence=f.confidence,
                    abstained=f.abstained, model=found.model, head=found.head, thumbnail=thumb)
            for ctx, f, thumb in zip(intake.contexts, found.findings, thumbs)
        ]
        if self.on_batch is not None:
            self.on_batch(intake)
        op_output.emit(findings, "findings")
        op_output.emit(list(intake.errors), "errors")
        self.joined += 1
        self.images += len(findings)
        self.errors += len(intake.errors)


class ReportingControlOp(Operator):
    """Keeps the reporting fragment alive and hears the other fragments' heartbeats and end of stream.

    Named inputs:
        ingest, inference: :class:`~burnscope.common.link.LinkControl` (optional per tick).

    Parameters:
        join: the fragment's :class:`ReportingJoinOp`.
        on_end: ``(eos)`` once ingest's end of stream has come and every batch has been joined
            (the run's ledger is told that the source has finished).

    The fragment is ended by its run monitor once the ledger has drained.
    """

    def __init__(self, fragment: Any, *args: Any, join: ReportingJoinOp, stats: LinkStats,
                 on_end: Callable[[Any], None] | None = None, period_s: float = 0.1, **kwargs: Any) -> None:
        self.join, self.stats, self.on_end = join, stats, on_end
        self.ended = False
        super().__init__(fragment, _periodic(fragment, period_s, "reporting_control_period"), *args, **kwargs)

    def setup(self, spec: OperatorSpec) -> None:
        _optional_input(spec, "ingest")
        _optional_input(spec, "inference")

    def compute(self, op_input: Any, op_output: Any, context: Any) -> None:
        for port in ("ingest", "inference"):
            msg = op_input.receive(port)
            if msg is not None:
                self.stats.hear(msg)
        eos = self.stats.eos.get(INGEST)
        if not self.ended and eos is not None and self.join.joined >= eos.batches:
            self.ended = True
            log.info("reporting: every batch joined (%d)", self.join.joined)
            if self.on_end is not None:
                self.on_end(eos)


__all__ = [
    "FRAGMENTS", "INFERENCE", "INGEST", "REPORTING", "FindingsLinkOp", "InferenceControlOp", "InferenceLinkOp",
    "IngestControlOp", "IngestLinkOp", "LinkMismatch", "LinkStats", "ReportingControlOp", "ReportingJoinOp",
]
