"""Crashes: the broker, a stream worker and the connector runner are SIGKILLed mid-stream.

Each test plays the seeded scenario through the full pipeline, kills one part several times while
data flows, and then demands that every counter equals the ground truth's recount three ways
(hub state, Prometheus, :class:`GroundTruth`). A lost event, a double count or a gap leaves the hub
short of — or above — the oracle, and the wait for convergence fails with the differing figures.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from schemas.raw import RawRecord
from tests.reliability.conftest import SOAK_SCALE, HubFactory
from tests.reliability.harness import HubUnderTest, dedicated_broker, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1800)]


def _kill_while_flowing(
    hub: HubUnderTest, kill: Callable[[], None], kills: int, rng: random.Random, busy: Callable[[], int]
) -> list[int]:
    """Call ``kill`` (SIGKILL + restart) ``kills`` times, each time once ``busy()`` (a progress
    counter of the victim) has moved: the victim is inside a batch, not idle. Returns the counter
    value at every kill."""
    at: list[int] = []
    for _ in range(kills):
        before = busy()

        def moved(b: int = before) -> bool:
            return busy() > b

        wait_until(moved, 120, "the victim to make progress", hub.logs)
        time.sleep(rng.uniform(0.0, 0.4))
        at.append(busy())
        kill()
    return at


def _records_processed(hub: HubUnderTest) -> int:
    st = hub.worker_status(hub.workers[0])
    return int(st["records_processed"]) if st else -1


def _connector_records(hub: HubUnderTest) -> int:
    h = hub.connectors_health()
    return sum(int(i["records_total"]) for i in h["instances"].values()) if h else -1


@pytest.mark.parametrize(
    "kills", [pytest.param(3, id="fast", marks=pytest.mark.slow), pytest.param(10, id="soak", marks=pytest.mark.soak)]
)
def test_worker_sigkill_mid_batch(hub_factory: HubFactory, kills: int) -> None:
    """SIGKILL a stream worker ``kills`` times while it processes the scenario; every counter = recount.

    Fails if a killed worker loses a transition (count below the truth), double counts a replayed
    event (above), or Prometheus / the partials disagree with the recount.
    """
    hub = hub_factory(**({"scale": SOAK_SCALE} if kills > 3 else {})).start()
    worker = hub.workers[0]
    # The worker's progress counter restarts at 0 with the process: count across restarts.
    done = [0]

    def busy() -> int:
        return done[0] + max(0, _records_processed(hub))

    def kill() -> None:
        done[0] = busy()
        worker.restart()

    at = _kill_while_flowing(hub, kill, kills, random.Random(kills), busy)
    hub.wait_caught_up()
    hub.check_figures()
    assert worker.kills == kills
    print(f"worker SIGKILLed {kills}x after {at} records processed")


@pytest.mark.parametrize(
    "kills", [pytest.param(3, id="fast", marks=pytest.mark.slow), pytest.param(10, id="soak", marks=pytest.mark.soak)]
)
def test_connector_runner_sigkill_between_produce_and_cursor_save(hub_factory: HubFactory, kills: int) -> None:
    """SIGKILL the connector runner while it produces pages; no gap, duplicates absorbed.

    The runner produces a page, waits for the acknowledgement, then saves the cursor: a SIGKILL while
    records flow lands, at random, between the two, so the restarted runner re-reads from the old
    cursor and produces the same records again (same deterministic event ids). Fails if a dossier
    version the source served finally is missing from the raw topic (a gap), or if the re-produced
    duplicates change a counter (three ways).
    """
    hub = hub_factory(**({"scale": SOAK_SCALE} if kills > 3 else {})).start()
    done = [0]

    def busy() -> int:
        return done[0] + max(0, _connector_records(hub))

    def kill() -> None:
        done[0] = busy()
        hub.connectors.restart()

    at = _kill_while_flowing(hub, kill, kills, random.Random(kills), busy)
    hub.wait_caught_up()
    hub.check_figures()
    raw = [RawRecord.model_validate_json(r.value) for r in hub.read_topic(hub.settings.topics.raw_motcua)]
    seen = Counter((r.key, int(r.version)) for r in raw if r.kind == "dossier")
    final = {(ma, int(s["PhienBan"])) for ma, s in hub.truth.final_snapshots.items()}
    missing = final - set(seen)
    assert not missing, f"{len(missing)} final dossier versions never reached the raw topic: {sorted(missing)[:10]}"
    print(
        f"connector runner SIGKILLed {kills}x after {at} records; {sum(seen.values()) - len(seen)} "
        "duplicate raw records absorbed"
    )


@pytest.mark.parametrize("kills", [pytest.param(2, id="fast"), pytest.param(5, id="soak", marks=pytest.mark.soak)])
def test_broker_sigkill_mid_stream(hub_factory: HubFactory, tmp_path: Path, kills: int) -> None:
    """SIGKILL the Kafka broker ``kills`` times while every part produces and consumes; restart it.

    A dedicated broker (the session's one serves other tests). Fails if an acknowledged record is
    lost (a figure below the truth), a retried produce is counted twice (above), or a process dies
    for good instead of reconnecting.
    """
    broker = dedicated_broker(tmp_path / "broker")
    try:
        hub = hub_factory(bootstrap=broker.bootstrap, **({"scale": SOAK_SCALE} if kills > 2 else {})).start()
        done = [0]

        def busy() -> int:
            return done[0] + max(0, _connector_records(hub))

        def kill() -> None:
            done[0] = busy()
            broker.kill()
            time.sleep(1.0)
            broker.start(timeout=120)

        at = _kill_while_flowing(hub, kill, kills, random.Random(kills), busy)
        hub.wait_caught_up(timeout=360)
        hub.check_figures()
        dead = [p.name for p in hub.procs if not p.alive()]
        assert not dead, f"processes died with the broker and did not recover: {dead}\n{hub.logs()}"
        print(f"broker SIGKILLed {kills}x after {at} connector records")
    finally:
        broker.stop()
