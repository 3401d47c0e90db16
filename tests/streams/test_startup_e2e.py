"""Start-up in order against the real broker: topics created and checked before faust, fresh starts under load.

The fresh-start test is what issue 12 saw fail once in three runs: a worker started on topics it
had never seen, with records already waiting and more arriving, lost its catalogue (faust refused
every catalogue write with ``PartitionsMismatch`` while the changelog topic it had just declared
was not in its metadata, and each entry became a payload-less dead letter). Each iteration here
is such a start: a new app id and new topics on the shared broker, only the raw topics created
beforehand (what the connectors create), the worker creating everything else itself; then the
catalogue the worker wrote, the figures and the dead letters are checked. Three iterations in
CI; ``pytest -m soak`` runs twenty.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from kafka.admin import NewTopic
from kafka.errors import TopicAuthorizationFailedError

from hub.commands.report import live_catalogue
from hub.commands.worker import prepare_topics
from hub.kafka import admin, ensure_topics, hub_topics, worker_topics
from schemas.calendar import TZ
from streams.topics import CATALOGUE_TABLE, DOSSIER_TABLE, RAW_SOURCES, changelog_topic

from .gen import recount, scenario
from .harness import (
    ROOT,
    Worker,
    caught_up,
    dead_letters,
    diff,
    domain_samples_expected,
    domain_samples_from_text,
    produce,
    wait_until,
    without_zeros,
    write_settings,
)

pytestmark = pytest.mark.e2e

PARTITIONS = 4


def _partitions(settings: Any, names: list[str]) -> dict[str, int]:
    client = admin(settings.kafka)
    try:
        return {str(d["name"]): len(d.get("partitions") or []) for d in client.describe_topics(names)
                if not d.get("error_code")}
    finally:
        client.close()


def test_the_worker_creates_its_topics_and_refuses_to_start_on_missing_or_mismatched_ones(
        tmp_path: Path, kafka_broker: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Nothing exists: the worker creates every topic it needs, its changelogs included, before faust.
    _, settings = write_settings(tmp_path / "a", kafka_broker.bootstrap, PARTITIONS, create=False)
    assert prepare_topics(settings) == 0
    wanted = {t.name: t.num_partitions for t in worker_topics(settings)}
    assert changelog_topic(settings, CATALOGUE_TABLE) in wanted
    assert _partitions(settings, sorted(wanted)) == wanted

    # A catalogue changelog of another partition count: a clear exit 2, before faust starts.
    config, other = write_settings(tmp_path / "b", kafka_broker.bootstrap, PARTITIONS, create=False)
    changelog = changelog_topic(other, CATALOGUE_TABLE)
    ensure_topics(other.kafka, [NewTopic(changelog, 2, 1, topic_configs={"cleanup.policy": "compact"})])
    assert prepare_topics(other) == 2
    err = capsys.readouterr().err
    assert f"{changelog} (expects {PARTITIONS} partition(s)): has 2 partition(s)" in err
    assert "kafka.partitions" in err
    # The command itself exits 2 with the message (and starts no faust worker).
    done = subprocess.run([sys.executable, "-m", "hub.commands.worker", "--config", str(config)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 2, done.stderr[-2000:]
    assert changelog in done.stderr

    # Missing topics the worker may not create (a cluster it does not administer): exit 2, naming them.
    _, third = write_settings(tmp_path / "c", kafka_broker.bootstrap, PARTITIONS, create=False,
                              extra="topics_timeout_s = 1")

    def refused(*_: Any, **__: Any) -> list[str]:
        raise TopicAuthorizationFailedError("not allowed to create topics")

    monkeypatch.setattr("hub.kafka.ensure_topics", refused)
    assert prepare_topics(third) == 2
    err = capsys.readouterr().err
    for table in (DOSSIER_TABLE, CATALOGUE_TABLE):
        assert f"{changelog_topic(third, table)} (expects {PARTITIONS} partition(s)): missing" in err
    assert "dvc-hub up" in err


def _fresh_start(base: Path, bootstrap: str, i: int) -> float:
    """One start from nothing under load; returns its duration. Fails with what went wrong."""
    started = time.monotonic()
    config, settings = write_settings(base / f"run{i}", bootstrap, PARTITIONS, create=False,
                                      extra="partials_interval_s = 1")
    raw_topics = {getattr(settings.topics, attr) for attr in RAW_SOURCES.values()}
    ensure_topics(settings.kafka, [t for t in hub_topics(settings) if t.name in raw_topics])
    sc = scenario(n_dossiers=60, seed=100 + i, prefix=f"H{i:02d}")
    rc = recount(sc)
    half = len(sc.records) // 2  # the catalogue comes first: it waits for the worker, with dossiers
    produce(settings, sc.records[:half])
    w = Worker(config, base, f"w{i}").start()
    try:
        produce(settings, sc.records[half:], pause_every=40, pause_s=0.01)  # more arrives while it starts
        wait_until(lambda: caught_up([w], PARTITIONS), 90, f"fresh start {i}: the worker to catch up", [w])

        # The catalogue the worker holds (its changelog, as the report and the portal sync read it).
        today = datetime.now(TZ).date()
        live = live_catalogue(settings)
        want = {u: rc.catalogue.offered(u, today) for u in rc.catalogue.units()}
        got = {u: live.offered(u, today) for u in rc.catalogue.units()}
        assert got == want, f"fresh start {i}: catalogue lost or partial: got {got}, want {want}"
        assert sum(n for counts in got.values() for n in counts.values()) > 0

        text = w.metrics_text()
        expected = without_zeros(domain_samples_expected(rc, datetime.now(TZ)))
        got_samples = without_zeros(domain_samples_from_text(text))
        assert got_samples == expected, f"fresh start {i}: " + diff(got_samples, expected)

        # Dead letters: the poison only (none from the state agent), each with what a replay needs.
        letters = dead_letters(settings)
        assert Counter(d.reason for d in letters) == Counter(sc.poison.values()), letters
        assert all(d.stage == "normalize" for d in letters)
        assert all(d.payload is not None or d.excerpt is not None for d in letters)
    finally:
        w.stop()
    return time.monotonic() - started


def test_fresh_starts_under_load_never_lose_the_catalogue(tmp_path: Path, kafka_broker: Any) -> None:
    times = [_fresh_start(tmp_path, kafka_broker.bootstrap, i) for i in range(3)]
    print(f"fresh starts: {', '.join(f'{t:.1f}s' for t in times)}")


@pytest.mark.soak
def test_twenty_fresh_starts_under_load_never_lose_the_catalogue(tmp_path: Path, kafka_broker: Any) -> None:
    times = [_fresh_start(tmp_path, kafka_broker.bootstrap, i) for i in range(20)]
    print(f"fresh starts: {', '.join(f'{t:.1f}s' for t in times)}")


def test_a_worker_without_catalogue_asks_and_the_runner_hears_it(tmp_path: Path, kafka_broker: Any) -> None:
    """The request crosses the broker: the worker writes it to topics.requests, the runner's listener reads it."""
    import asyncio
    import threading

    from connectors.sdk.runner import ConnectorRunner
    from hub.requests import CatalogueRequest

    config, settings = write_settings(tmp_path, kafka_broker.bootstrap, PARTITIONS,
                                      extra="partials_interval_s = 1\ncatalogue_request_interval_s = 5")
    sc = scenario(n_dossiers=10, seed=5)
    produce(settings, [r for r in sc.records if r[0] != "catalogue"])  # dossiers, and no catalogue

    asked: list[str] = []

    class Engine:  # what the runner asks of its engines
        name = "motcua-14767"

        def request_resend(self, kind: str) -> list[str]:
            asked.append(kind)
            return ["catalogue"]

    runner = ConnectorRunner(settings, [], serve_http=False)
    runner.engines = [Engine()]  # type: ignore[list-item]
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    listener = threading.Thread(target=loop.run_until_complete, args=(runner._listen_requests(stop),), daemon=True)
    listener.start()
    time.sleep(3)  # the listener reads from the topic's end as it is when it starts
    w = Worker(config, tmp_path).start()
    try:
        wait_until(lambda: asked, 90, "the worker's catalogue request to reach the runner", [w])
        assert asked == ["catalogue"]
        assert runner.resends == 1
        requests = [CatalogueRequest.parse(v) for v in _values(settings, settings.topics.requests)]
        assert requests
        assert {r.app_id for r in requests} == {settings.worker.app_id}
    finally:
        w.stop()
        loop.call_soon_threadsafe(stop.set)
        listener.join(timeout=10)
        loop.close()


def _values(settings: Any, topic: str) -> list[bytes]:
    from kafka import TopicPartition

    from hub.kafka import consumer

    cons = consumer(settings.kafka, "tests-requests", group_id=None)
    try:
        tp = TopicPartition(topic, 0)
        cons.assign([tp])
        cons.seek_to_beginning(tp)
        end = cons.end_offsets([tp])[tp]
        out: list[bytes] = []
        deadline = time.monotonic() + 10
        while cons.position(tp) < end and time.monotonic() < deadline:
            for records in cons.poll(timeout_ms=500).values():
                out.extend(r.value for r in records)
        return out
    finally:
        cons.close()
