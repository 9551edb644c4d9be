"""Shared helpers for the DICOM network and source-graph tests (not a test module)."""

from __future__ import annotations

import socket
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from burnscope.operators.sinks.orthanc_local import free_port

SAMPLE = Path(__file__).resolve().parents[1] / "sample_data"
#: The sample instances that decode (the truncated one is left out).
GOOD_FILES = [p for p in sorted(SAMPLE.glob("study-*/*.dcm")) if "truncated" not in p.name]


def wait_for_port(port: int, host: str = "127.0.0.1") -> None:
    """Blocks until something listens on ``port`` (about 5 s at most)."""
    for _ in range(100):
        with socket.socket() as s:
            if s.connect_ex((host, port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError("SCP did not start")


def in_background(target: Callable[[], Any]) -> threading.Thread:
    """Starts ``target`` in a daemon thread (a stuck sender cannot keep the test run alive)."""
    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread


def pynetdicom_send(port: int, files: list[Path], ae_title: str, called_ae: str = "BURNSCOPE") -> list[int]:
    """C-STOREs ``files`` over one association once the port is up; returns the statuses."""
    import pydicom
    from pynetdicom import AE

    wait_for_port(port)
    ae = AE(ae_title=ae_title)
    datasets = [pydicom.dcmread(p) for p in files]
    for ds in datasets:
        ae.add_requested_context(ds.SOPClassUID, ds.file_meta.TransferSyntaxUID)
    assoc = ae.associate("127.0.0.1", port, ae_title=called_ae)
    assert assoc.is_established
    statuses = [assoc.send_c_store(ds).Status for ds in datasets]
    assoc.release()
    return statuses


def storescu_send(port: int, files: list[Path], called_ae: str = "BURNSCOPE") -> subprocess.CompletedProcess:
    """Sends ``files`` with dcmtk's storescu once the port is up."""
    wait_for_port(port)
    return subprocess.run(
        ["storescu", "-aec", called_ae, "-aet", "DCMTK", "-xy", "127.0.0.1", str(port), *map(str, files)],
        capture_output=True, text=True, timeout=60,
    )


def run_source_graph(make_source: Callable[[Any], Any], background: Callable[[], Any] | None = None) -> Any:
    """Runs ``make_source(app)`` → a sink that collects both ports; returns the finished app.

    ``app.source`` is the source operator; ``app.sink.images`` / ``app.sink.errors`` hold all
    that was emitted. ``background`` (e.g. a sender) runs in a thread while the app runs.
    """
    from burnscope.operators.holoscan_runtime import holoscan  # noqa: F401
    from holoscan.core import Application, Operator

    class Collect(Operator):
        def __init__(self, fragment, *args, **kwargs):
            self.images, self.errors = [], []
            super().__init__(fragment, *args, **kwargs)

        def setup(self, spec):
            spec.input("images")
            spec.input("errors")

        def compute(self, op_input, op_output, context):
            self.images += op_input.receive("images")
            self.errors += op_input.receive("errors")

    class App(Application):
        def compose(self):
            self.source = make_source(self)
            self.sink = Collect(self, name="collect")
            self.add_flow(self.source, self.sink, {("images", "images"), ("errors", "errors")})

    app = App()
    thread = in_background(background) if background is not None else None
    app.run()
    if thread is not None:
        thread.join()
    return app


__all__ = [
    "GOOD_FILES", "SAMPLE", "free_port", "in_background", "pynetdicom_send", "run_source_graph",
    "storescu_send", "wait_for_port",
]
