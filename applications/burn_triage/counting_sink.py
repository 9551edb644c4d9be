"""A sink that counts what reaches it and keeps nothing: the headless benchmark's end of graph."""

from __future__ import annotations

from collections import Counter
from typing import Any, Callable

from burnscope.operators.holoscan_runtime import holoscan  # noqa: F401  (preloads libcudart)
from holoscan.core import Operator, OperatorSpec


class CountingSinkOp(Operator):
    """Receives lists on one port, counts their items and tallies them by a key.

    Named inputs:
        <port>: any ``list``.

    Parameters:
        port: the input port's name (``reports`` or ``errors`` in burn-triage).
        key: ``item -> str | None`` to tally by (e.g. the finding label of a report); items it
            maps to None are not counted at all (study roll-ups beside image reports).
        ledger: a :class:`~burnscope.operators.flow.ledger.RunLedger`: this sink is a terminal
            of the graph (its messages are counted for the drain).
        settle: ``"reports"`` or ``"errors"``: what reaches this sink is settled in the ledger
            (the headless run, where these sinks end the graph); None: counted only.

    After ``app.run()``: ``count`` (items), ``messages`` (lists received), ``sizes`` (items per
    message, in arrival order), ``labels`` (Counter).
    """

    def __init__(
        self, fragment: Any, *args: Any, port: str = "in", key: Callable[[Any], str] | None = None,
        ledger: Any = None, settle: str | None = None, **kwargs: Any
    ) -> None:
        self.port = port
        self.key = key
        self.ledger = ledger
        self.settle = settle
        self.count = 0
        self.messages = 0
        self.sizes: list[int] = []
        self.labels: Counter[str] = Counter()
        super().__init__(fragment, *args, **kwargs)
        if ledger is not None:
            ledger.register_terminal(self.name)

    def setup(self, spec: OperatorSpec) -> None:
        spec.input(self.port)

    def compute(self, op_input: Any, op_output: Any, context: Any) -> None:
        items = op_input.receive(self.port) or []
        keys = [self.key(item) for item in items] if self.key is not None else [""] * len(items)
        counted = [k for k in keys if k is not None]
        self.messages += 1
        self.count += len(counted)
        self.sizes.append(len(counted))
        if self.key is not None:
            self.labels.update(counted)
        if self.ledger is not None:
            if self.settle == "reports":
                self.ledger.settle_reports(items)
            elif self.settle == "errors":
                self.ledger.settle_errors(items)
            self.ledger.message_done(self.name)
