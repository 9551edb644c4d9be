"""Open-loop load on the burn-triage service: Poisson arrivals over C-STORE, STAT and routine mixed.

``burnscope bench burn-triage --rate IMG_PER_S --stat-fraction F --duration S`` runs one load; the
campaign behind ``docs/benchmarks/service-cpu.md`` is ``python -m burnscope.benchmarks.service_load``
(capacity, unloaded batch-1 latency, routine load at 90 % of capacity with STAT images, and the
targets). From Python::

    result = run_load(settings, components, rate=20, stat_fraction=0.1, duration_s=60)

How it measures: the service runs in this process (the graph of ``burnscope serve`` with its
SCP on a free loopback port); a sender thread stores copies of the sample instances (new SOP
Instance UIDs) at exponentially distributed gaps — open loop: a send is never delayed by the
service's answers, only by the sender itself, whose lateness is reported — STAT ones with DIMSE
Priority HIGH. Latency is per image from the moment the SCP has the instance (C-STORE done) to
its report written (the service's own end-to-end clock, ``burnscope_e2e_seconds``). Queue depths
are sampled every 100 ms. Inputs are arguments with defaults an installed wheel has (the shipped sample
photographs, wrapped as DICOM, when no folder is given).
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from burnscope.applications.burn_triage.app import TriageComponents
from burnscope.applications.burn_triage.service import StopRequest, serve_triage
from burnscope.benchmarks.burn_triage import peak_rss_mb, percentile
from burnscope.benchmarks.environment import cpu_facts
from burnscope.common.messages import ROUTINE, STAT
from burnscope.operators.monitoring.core import InFlight, ServiceMetrics


def poisson_schedule(rate: float, duration_s: float, stat_fraction: float, seed: int = 0) -> list[tuple[float, bool]]:
    """``(seconds from start, is STAT)`` of arrivals at ``rate`` per second for ``duration_s``."""
    rng, t, out = random.Random(seed), 0.0, []
    while True:
        t += rng.expovariate(rate)
        if t >= duration_s:
            return out
        out.append((t, rng.random() < stat_fraction))


def sample_datasets(folder: str | Path | None = None) -> list[Any]:
    """Single-frame DICOM images to send (a folder's, or the shipped photographs)."""
    import pydicom

    if folder:
        paths = sorted(Path(folder).rglob("*.dcm"))
    else:  # the photographs installed with burnscope, wrapped as VL Photographic Images
        from burnscope.operators.dicom_loader.photo import wrap_photo
        from burnscope.operators.preprocess.calibration import image_files, sample_photo_dirs

        tmp = Path(tempfile.mkdtemp(prefix="burnscope-load-images-"))
        paths = []
        for photo in image_files(sample_photo_dirs()):
            paths.append(tmp / f"{photo.stem}.dcm")
            wrap_photo(photo, paths[-1])
    out = []
    for p in paths:
        try:
            ds = pydicom.dcmread(p)
        except Exception:  # noqa: BLE001 - not DICOM: skip
            continue
        if "PixelData" in ds and int(ds.get("NumberOfFrames", 1) or 1) == 1:
            out.append(ds)
    if not out:
        raise ValueError(f"no single-frame DICOM image under {folder}")
    return out


def _copy(ds: Any) -> Any:
    import copy

    from pydicom.uid import generate_uid

    new = copy.deepcopy(ds)
    new.SOPInstanceUID = new.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    return new


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Service:
    """The service graph in a background thread, one C-STORE association to it, a clean stop:
    ``with Service(settings, components) as svc: svc.send(ds, stat=True)``."""

    def __init__(self, settings: dict[str, Any], components: TriageComponents) -> None:
        import copy

        self.settings = copy.deepcopy(settings)
        self.port = _free_port()
        self.settings["source"]["scp"].update(port=self.port, bind_address="127.0.0.1",
                                              timeouts={"acse_s": 300, "dimse_s": 300, "network_s": 300})
        self._tmp = tempfile.TemporaryDirectory(prefix="burnscope-load-")
        self.out = Path(self._tmp.name) / "out"
        self.settings["source"]["scp"]["spool_dir"] = str(Path(self._tmp.name) / "spool")
        self.components = components
        self.metrics = ServiceMetrics()
        self.in_flight = InFlight(self.metrics, keep_latencies=True)
        self.stop = StopRequest()
        self.started = threading.Event()
        self.result: tuple[dict, int] | None = None
        self.app = None
        self._assoc = None
        self._lock = threading.Lock()
        self.resends = 0

    def _run(self) -> None:
        def ready(app: Any) -> None:
            self.app = app
            self.started.set()

        self.result = serve_triage(self.settings, self.out, self.components, listen=True, watch=None,
                                   metrics=self.metrics, stop=self.stop, install_signals=False, on_started=ready,
                                   in_flight=self.in_flight)
        self.started.set()

    def __enter__(self) -> "Service":
        self.out.mkdir(parents=True)
        self._thread = threading.Thread(target=self._run, name="service", daemon=True)
        self._thread.start()
        if not self.started.wait(300) or self.app is None:
            raise RuntimeError(f"the service did not start ({self.result and self.result[0].get('outcome')})")
        self._connect()
        return self

    def _connect(self) -> None:
        from pynetdicom import AE

        ae = AE(ae_title="LOADGEN")
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 300
        for uid in ("1.2.840.10008.5.1.4.1.1.77.1.4", "1.2.840.10008.5.1.4.1.1.7"):
            for syntax in ("1.2.840.10008.1.2.1", "1.2.840.10008.1.2.4.50"):  # explicit VR LE, JPEG baseline
                ae.add_requested_context(uid, syntax)
        self._assoc = ae.associate("127.0.0.1", self.port, ae_title=self.settings["source"]["scp"]["ae_title"])
        if not self._assoc.is_established:
            raise RuntimeError("no association with the service")

    def send(self, ds: Any, stat: bool = False) -> int:
        """C-STORE ``ds`` (DIMSE Priority HIGH when ``stat``); a lost association is opened again
        and the instance sent once more (counted in ``resends``)."""
        with self._lock:
            status = self._assoc.send_c_store(ds, priority=1 if stat else 0)
            if "Status" not in status:
                self.resends += 1
                self._connect()
                status = self._assoc.send_c_store(ds, priority=1 if stat else 0)
            return int(status.get("Status", 0xFFFF))

    def wait_reported(self, n: int, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while self.in_flight.accounting()["reported"] + self.in_flight.accounting()["errors"] < n:
            if time.monotonic() > deadline or not self._thread.is_alive():
                return False
            time.sleep(0.02)
        return True

    def __exit__(self, *exc: Any) -> None:
        if self._assoc is not None:
            self._assoc.release()
        self.stop.request()
        self._thread.join(timeout=600)
        self._tmp.cleanup()


def _lat(values: list[float]) -> dict[str, float]:
    ms = [v * 1000.0 for v in values]
    return {"n": len(ms), "p50": round(percentile(ms, 50), 1), "p95": round(percentile(ms, 95), 1),
            "p99": round(percentile(ms, 99), 1)}


def run_load(settings: dict[str, Any], components: TriageComponents, rate: float, stat_fraction: float = 0.1,
             duration_s: float = 60.0, images: str | Path | None = None, seed: int = 0,
             drain_timeout_s: float = 600.0) -> dict[str, Any]:
    """One open-loop run (see the module docstring); returns the figures as a dict."""
    datasets = sample_datasets(images)
    schedule = poisson_schedule(rate, duration_s, stat_fraction, seed)
    prepared = [(t, stat, _copy(datasets[i % len(datasets)])) for i, (t, stat) in enumerate(schedule)]
    depth_samples: dict[str, list[float]] = {"source": [], "batcher": [], "reporting": []}
    lateness: list[float] = []
    with Service(settings, components) as svc:
        sampling = threading.Event()

        def sample() -> None:
            while not sampling.wait(0.1):
                for q in depth_samples:
                    depth_samples[q].append(svc.metrics.queue.labels(q)._value.get())

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        start = time.perf_counter()
        for t, stat, ds in prepared:
            delay = start + t - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            lateness.append(max(0.0, -delay))
            svc.send(ds, stat)
        sent_s = time.perf_counter() - start
        drained = svc.wait_reported(len(prepared), drain_timeout_s)
        total_s = time.perf_counter() - start
        sampling.set()
        sampler.join()
        lat = svc.in_flight.latencies or []
        accounting = svc.in_flight.accounting()
        batches = dict(svc.app.batcher.batches_emitted)
        batch_sum = svc.metrics.batch
        stages = stage_means_ms(svc.metrics)
    stat_lat = [d for p, d, _ in lat if p == STAT]
    routine_lat = [d for p, d, _ in lat if p == ROUTINE]
    return {
        "offered_rate": rate,
        "stat_fraction": stat_fraction,
        "duration_s": duration_s,
        "sent": len(prepared),
        "sent_stat": sum(1 for _, s, _ in prepared if s),
        "resends": svc.resends,
        "sender_lateness_ms_p99": round(percentile([x * 1000 for x in lateness], 99), 1) if lateness else 0.0,
        "achieved_images_per_s": round(accounting["reported"] / total_s, 2) if drained else None,
        "send_window_s": round(sent_s, 2),
        "drained": drained,
        "latency_ms": {"stat": _lat(stat_lat), "routine": _lat(routine_lat), "all": _lat(stat_lat + routine_lat)},
        "queue_depth": {q: {"mean": round(sum(v) / len(v), 2) if v else 0.0, "max": max(v, default=0.0)}
                        for q, v in depth_samples.items()},
        "batches": batches,
        "mean_batch_size": _mean_batch(batch_sum),
        "stage_ms": stages,
        "accounting": accounting,
        **_config(settings, components),
    }


def _mean_batch(hist: Any) -> dict[str, float]:
    out = {}
    for metric in hist.collect():
        sums = {s.labels["lane"]: s.value for s in metric.samples if s.name.endswith("_sum")}
        counts = {s.labels["lane"]: s.value for s in metric.samples if s.name.endswith("_count")}
        out = {lane: round(sums[lane] / counts[lane], 2) for lane in counts if counts[lane]}
    return out


def stage_means_ms(metrics: ServiceMetrics) -> dict[str, float]:
    """Mean time per image in each stage (ms), from the service's own histograms."""
    out = {}
    for metric in metrics.stage.collect():
        sums = {x.labels["stage"]: x.value for x in metric.samples if x.name.endswith("_sum")}
        counts = {x.labels["stage"]: x.value for x in metric.samples if x.name.endswith("_count")}
        out = {k: round(1000 * sums[k] / counts[k], 2) for k in counts if counts[k]}
    return out


def _config(settings: dict[str, Any], components: TriageComponents) -> dict[str, Any]:
    info = components.model_info
    return {
        "model": {"name": info.name, "config": settings["inference"]["model_config"], "demo": info.demo,
                  "backend": info.backend, "precision": info.precision, "device": info.device},
        "batching": dict(settings["batching"]),
        "stat_lane": bool(settings["priority"]["stat_lane"]),
        "formats": list(settings["report"]["formats"]),
        "reporting_workers": settings["reporting"]["workers"],
    }


def capacity(settings: dict[str, Any], components: TriageComponents, n: int = 120,
             images: str | Path | None = None) -> dict[str, Any]:
    """Images/s when ``n`` images arrive at once (closed: the sender only waits for the SCP)."""
    datasets = sample_datasets(images)
    prepared = [_copy(datasets[i % len(datasets)]) for i in range(n)]
    with Service(settings, components) as svc:
        start = time.perf_counter()
        for ds in prepared:
            svc.send(ds)
        svc.wait_reported(n, 900)
        wall = time.perf_counter() - start
        lat = [d for _, d, _ in svc.in_flight.latencies or []]
        stages = stage_means_ms(svc.metrics)
    return {"images": n, "wall_s": round(wall, 2), "images_per_s": round(n / wall, 2),
            "latency_ms": _lat(lat), "stage_ms": stages, **_config(settings, components)}


def table(rows: list[tuple[str, dict[str, Any]]]) -> str:
    """A Markdown table of load runs."""
    lines = ["| run | offered img/s | achieved img/s | STAT p50/p95/p99 ms | routine p50/p95/p99 ms | mean batch | "
             "max queue (source/batcher/reporting) |", "|---|---|---|---|---|---|---|"]
    for name, r in rows:
        s, q = r["latency_ms"]["stat"], r["queue_depth"]
        rt = r["latency_ms"]["routine"]
        lines.append(
            f"| {name} | {r['offered_rate']} | {r['achieved_images_per_s']} | "
            f"{s['p50']}/{s['p95']}/{s['p99']} (n={s['n']}) | {rt['p50']}/{rt['p95']}/{rt['p99']} (n={rt['n']}) | "
            f"{r['mean_batch_size']} | {q['source']['max']:.0f}/{q['batcher']['max']:.0f}/{q['reporting']['max']:.0f} |")
    return "\n".join(lines)


def campaign(settings: dict[str, Any], components: TriageComponents, duration_s: float = 60.0,
             stat_fraction: float = 0.1, load: float = 0.9, images: str | Path | None = None) -> dict[str, Any]:
    """Capacity, unloaded batch-1 latency, then routine load at ``load`` × capacity with STAT mixed
    in; checks the targets (STAT p99 ≤ 2 × unloaded batch-1 p99 and ≤ 0.25 × routine p99)."""
    import copy

    cap = capacity(settings, components, images=images)
    batch1 = copy.deepcopy(settings)
    batch1["batching"].update(max_batch=1, max_delay_ms=0)
    unloaded = run_load(batch1, components, rate=max(0.2, 0.1 * cap["images_per_s"]), stat_fraction=0.0,
                        duration_s=duration_s, images=images, seed=1)
    loaded = run_load(settings, components, rate=round(load * cap["images_per_s"], 2), stat_fraction=stat_fraction,
                      duration_s=duration_s, images=images, seed=2)
    base_p99 = unloaded["latency_ms"]["routine"]["p99"]
    stat_p99, routine_p99 = loaded["latency_ms"]["stat"]["p99"], loaded["latency_ms"]["routine"]["p99"]
    return {
        "machine": cpu_facts(),
        "capacity": cap,
        "unloaded_batch1": unloaded,
        "loaded": loaded,
        "targets": {
            "unloaded_batch1_p99_ms": base_p99,
            "stat_p99_ms": stat_p99,
            "routine_p99_ms": routine_p99,
            "stat_vs_unloaded_batch1": round(stat_p99 / base_p99, 2) if base_p99 else None,
            "stat_vs_routine": round(stat_p99 / routine_p99, 3) if routine_p99 else None,
            "stat_p99_le_2x_unloaded_batch1": bool(stat_p99 <= 2 * base_p99),
            "stat_p99_le_quarter_routine_p99": bool(stat_p99 <= 0.25 * routine_p99),
        },
        "peak_rss_mb": round(peak_rss_mb(), 1),
    }


def service_components(config: str | None, model_config: str, max_batch: int | None = None) -> tuple[dict, Any]:
    """Settings (``config`` over the defaults, ``model_config``) and the service's engines, built
    for ``max_batch`` (default: ``batching.max_batch``) with the emergency lane's engine."""
    from burnscope.applications.burn_triage.app import build_components
    from burnscope.applications.burn_triage.settings import load_settings
    from burnscope.operators.batching.core import engine_batch_sizes

    settings = load_settings(config, {"inference": {"model_config": model_config}})
    components = build_components(settings, batch_sizes=engine_batch_sizes(max_batch or settings["batching"]["max_batch"]),
                                  stat_engine=bool(settings["priority"]["stat_lane"]))
    return settings, components


def _main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-c", "--config", help="app YAML (e.g. report formats, batching)")
    parser.add_argument("--model-config", default="biomedclip-tiny")
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--stat-fraction", type=float, default=0.1)
    parser.add_argument("--load", type=float, default=0.9, help="routine load as a fraction of capacity")
    parser.add_argument("--images", help="folder of DICOM images to send (default: the shipped sample photographs as DICOM)")
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args()
    settings, components = service_components(args.config, args.model_config)
    result = campaign(settings, components, args.duration, args.stat_fraction, args.load, args.images)
    print(f"capacity: {result['capacity']['images_per_s']} img/s ({result['capacity']['images']} images at once)")
    print(table([("unloaded, batch 1", result["unloaded_batch1"]), (f"{args.load:.0%} of capacity", result["loaded"])]))
    print(json.dumps(result["targets"], indent=1))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    _main()


__all__ = ["Service", "campaign", "capacity", "poisson_schedule", "run_load", "sample_datasets", "table"]
