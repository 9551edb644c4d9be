"""Distributed options → Holoscan's argv, environment defaults, the link watchdog's rules."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from burnscope.applications.burn_triage.distributed import LinkWatchdog
from burnscope.applications.burn_triage.fragments import (
    ENVIRONMENT_DEFAULTS,
    DistributedOptions,
    apply_environment_defaults,
)
from burnscope.applications.burn_triage.link_ops import LinkStats
from burnscope.common.link import END_OF_STREAM, LinkControl


def test_no_option_means_the_single_fragment_graph():
    assert not DistributedOptions().enabled


def test_argv_has_only_the_distributed_options():
    opts = DistributedOptions(worker=True, address="10.0.0.10:8765", worker_address="10.0.0.20:10000",
                              fragments="inference")
    assert opts.argv() == ["burnscope", "--worker", "--address", "10.0.0.10:8765", "--worker-address",
                           "10.0.0.20:10000", "--fragments", "inference"]
    assert opts.local_fragments() == ("inference",)
    # --fragments all alone: Holoscan's local mode (no driver service, no fixed port), every fragment here
    assert DistributedOptions(fragments="all").argv() == ["burnscope"] and DistributedOptions(fragments="all").local
    assert DistributedOptions(address="127.0.0.1:9").argv() == ["burnscope", "--address", "127.0.0.1:9",
                                                                 "--driver", "--worker"]
    assert DistributedOptions(fragments="all").local_fragments() == ("ingest", "inference", "reporting")
    assert DistributedOptions(driver=True, address="h:1").local_fragments() == ()  # it only schedules


def test_holoscan_keeps_nothing_of_ours():
    """What Holoscan's own parser leaves in ``argv`` after the explicit list (it would take
    ``--config`` and exit on ``--help``/``--version`` if it saw the burnscope command line)."""
    from burnscope.operators.holoscan_runtime import holoscan  # noqa: F401
    from holoscan.core import Application

    opts = DistributedOptions(driver=True, worker=True, address="127.0.0.1:18777", fragments="ingest,reporting")
    app = Application(opts.argv())
    assert len(app.argv) == 1  # the program name only (Holoscan blanks it)
    assert app.options.run_driver and app.options.run_worker
    assert app.options.driver_address == "127.0.0.1:18777" and not app.options.config_path


@pytest.mark.parametrize("kwargs, message", [
    ({"worker": True, "fragments": "inference"}, "--address"),
    ({"worker": True, "address": "h:1", "fragments": "gpu"}, "unknown fragment"),
    ({"fragments": "inference", "address": "h:1"}, "needs --worker"),
])
def test_invalid_combinations_are_one_line(kwargs, message):
    with pytest.raises(ValueError, match=message):
        DistributedOptions(**kwargs).validate()


def test_environment_defaults_never_override_the_user():
    env = {"UCX_TCP_TX_SEG_SIZE": "256k"}
    added = apply_environment_defaults(env)
    assert env["UCX_TCP_TX_SEG_SIZE"] == "256k" and "UCX_TCP_TX_SEG_SIZE" not in added
    assert env["UCX_TCP_RX_SEG_SIZE"] == ENVIRONMENT_DEFAULTS["UCX_TCP_RX_SEG_SIZE"] == "128k"
    assert "HOLOSCAN_STOP_ON_DEADLOCK_TIMEOUT" in env
    assert int(env["HOLOSCAN_MAX_CONNECTION_RETRY_COUNT"]) >= 60  # a worker may start before its driver


class _Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def _watchdog(local, clock, **kw):
    app = SimpleNamespace(stats=LinkStats(clock=clock), local=local)
    return app, LinkWatchdog(app, done=lambda: False, on_lost=lambda r: None, **kw)


def test_watchdog_watches_the_fragments_upstream_of_its_own():
    clock = _Clock()
    assert _watchdog(("ingest", "reporting"), clock)[1].watched == ["inference", "ingest"]
    assert _watchdog(("inference",), clock)[1].watched == ["ingest"]
    assert _watchdog(("ingest",), clock)[1].watched == []


def test_watchdog_startup_deadline_silence_and_end_of_stream():
    clock = _Clock()
    app, dog = _watchdog(("inference",), clock, startup_timeout_s=10, link_timeout_s=5)
    clock.t += 9
    assert dog.check(clock.t) is None
    clock.t += 2
    assert dog.check(clock.t)["why"] == "never connected"
    app.stats.hear(LinkControl("ingest", seq=1, batches=2))
    clock.t += 4
    assert dog.check(clock.t) is None
    clock.t += 1.5
    lost = dog.check(clock.t)
    assert lost == {"outcome": "link_lost", "fragment": "ingest", "why": "went silent", "silent_s": 5.5}
    app.stats.hear(LinkControl("ingest", END_OF_STREAM, seq=2, batches=3))
    clock.t += 60
    assert dog.check(clock.t) is None  # after its end of stream a fragment may stop talking
    assert app.stats.sent_batches("ingest") == 3


def test_never_connected_says_which_upstream_fragments_were_heard():
    clock = _Clock()
    app, dog = _watchdog(("ingest", "reporting"), clock, startup_timeout_s=10)
    app.stats.hear(LinkControl("ingest", seq=1, batches=0))
    clock.t += 11
    app.stats.hear(LinkControl("ingest", seq=2, batches=0))
    lost = dog.check(clock.t)
    assert (lost["fragment"], lost["why"], lost["heard"]) == ("inference", "never connected", ["ingest"])
