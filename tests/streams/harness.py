"""Running real workers against the real broker: settings files, producing input, scraping, waiting."""

from __future__ import annotations

import re
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from hub.broker import free_port
from hub.config import Settings, load_settings
from hub.deadletter import DeadLetter
from hub.kafka import ensure_topics, hub_topics, producer
from hub.metrics import (
    DOMAIN_METRICS,
    KPI766_RATE,
    KPI766_SCORE,
    PROCEDURES_OFFERED,
    PROCEDURES_WITHOUT_DOSSIER,
)
from hub.process import ChildProcess
from streams.collector import to_families
from streams.topics import RAW_SOURCES

from .gen import Recount, Scenario

#: Gauges every worker exposes as an identical city-wide copy (streams.merged): not summed over workers.
MERGED_NAMES = {m.name for m in (KPI766_RATE, KPI766_SCORE, PROCEDURES_OFFERED, PROCEDURES_WITHOUT_DOSSIER)}
#: The additive domain gauges: a worker's partitions only, summed over workers.
DOMAIN_NAMES = {m.name for m in DOMAIN_METRICS} - MERGED_NAMES
ROOT = Path(__file__).resolve().parents[2]
#: The workers' stall watchdog in these tests (streams.watchdog).
STALL_TIMEOUT_S = 60


def write_settings(tmp_path: Path, bootstrap: str, partitions: int = 4, *, create: bool = True,
                   extra: str = "") -> tuple[Path, Settings]:
    """A TOML config with unique topic names and app id, so tests never see each other's data.

    ``create``: create every hub topic now (else the test creates what it wants, the worker the rest);
    ``extra``: more TOML lines for the ``[worker]`` table.
    """
    uid = uuid.uuid4().hex[:8]
    topics = "\n".join(
        f'{attr} = "t{uid}.{attr}"'
        for attr in ("raw_motcua", "raw_qlvb", "raw_portal", "raw_catalogue", "canonical", "dead_letter",
                     "connector_state", "partials", "outbox", "sync_state", "audit", "requests")
    )
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / f"hub-{uid}.toml"
    path.write_text(
        f"""
# A test against its own broker: the demo profile's public secrets are all it needs.
profile = "demo"

[kafka]
bootstrap_servers = "{bootstrap}"
partitions = {partitions}

[embedded_broker]
enabled = false

[topics]
{topics}

[worker]
app_id = "test-{uid}"
data_dir = "{(tmp_path / f"worker-{uid}").as_posix()}"
# Shorter than the 180 s default so that a stalled worker restarts well within a test's wait.
stall_timeout_s = {STALL_TIMEOUT_S}
{extra}
""",
        encoding="utf-8",
    )
    settings = load_settings(path)
    if create:
        ensure_topics(settings.kafka, hub_topics(settings))
    return path, settings


def produce(settings: Settings, records: Iterable[tuple[str, bytes, bytes]], pause_every: int = 0,
            pause_s: float = 0.0) -> int:
    prod = producer(settings.kafka, "tests")
    n = 0
    try:
        for source, key, value in records:
            prod.send(getattr(settings.topics, RAW_SOURCES[source]), key=key, value=value)
            n += 1
            if pause_every and n % pause_every == 0:
                prod.flush()
                time.sleep(pause_s)
        prod.flush()
    finally:
        prod.close()
    return n


class Worker(ChildProcess):
    """``python -m hub.commands.worker`` as a child process, on its own web port."""

    def __init__(self, config: Path, log_dir: Path, name: str = "w") -> None:
        self.config = config
        self.port = free_port()
        super().__init__(
            [sys.executable, "-m", "hub.commands.worker", "--config", str(config), "--web-port", str(self.port)],
            log_dir / f"worker-{name}-{self.port}.log", cwd=ROOT, die_with_parent=True,
        )

    def get(self, path: str) -> httpx.Response:
        return httpx.get(f"http://127.0.0.1:{self.port}{path}", timeout=5)

    def status(self) -> dict[str, Any] | None:
        try:
            r = self.get("/api/v1/status")
        except httpx.HTTPError:
            return None
        return r.json() if r.status_code == 200 else None

    def metrics_text(self) -> str:
        return self.get("/metrics").text


def wait_until(pred: Callable[[], Any], timeout: float, what: str, workers: Iterable[Worker] = ()) -> Any:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = pred()
        if last:
            return last
        time.sleep(0.3)
    logs = "\n".join(f"--- {w.log_path.name}\n{digest(w.log_path)}" for w in workers)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last={last!r}\n{logs}")


#: Log lines that tell a rebalance's and a recovery's story (kept in a failure's digest).
_MILESTONES = re.compile(
    r"===== start|Joined group|Revoking|Setting newly assigned|Restoring state|Done reading|Recovery complete|"
    r"Restore complete|Restarting Recovery|Seek stream partitions|Worker ready|rebuilt aggregates|"
    r"fetched offset|Timed out|timed out|wait_empty|\[WARNING\]|\[ERROR\]|Traceback|Error"
)
_STAMP = re.compile(r"^\[?\d{4}-\d\d-\d\d[ T][\d:,.]+\]?\s*(\[\d+\]\s*)?")


def digest(log_path: Path, milestones: int = 80, tail: int = 25) -> str:
    """A failing wait's view of a worker log: its milestones, then its tail, repeats collapsed.

    CI keeps only part of a failed run's output, and a stuck worker repeats one warning every few
    seconds: a plain tail would be that warning sixty times. Lines equal but for their time stamp
    are shown once, with the count and the first time seen.
    """
    try:
        lines = log_path.read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"

    def collapse(selected: list[str]) -> list[str]:
        first: dict[str, str] = {}  # text without its time stamp -> the first line with it
        counts: Counter[str] = Counter()
        for line in selected:
            text = _STAMP.sub("", line)
            counts[text] += 1
            first.setdefault(text, line)
        return [line if counts[text] == 1 else f"{line}  (x{counts[text]})" for text, line in first.items()]

    keys = collapse([line for line in lines if _MILESTONES.search(line)])[-milestones:]
    last = collapse(lines[-400:])[-tail:]
    return "\n".join(["[milestones]", *keys, "[tail]", *last])


def caught_up(workers: list[Worker], partitions: int) -> bool:
    """Every partition owned, every worker caught up; a worker whose watchdog fired is started again.

    The restart is what ``dvc-hub up`` (or systemd, Kubernetes) does in production, and the figures
    checked afterwards must still equal the recount.
    """
    for w in workers:
        w.restart_if_exited()
    statuses = [w.status() for w in workers]
    if any(s is None for s in statuses):
        return False
    owned: list[int] = [p for s in statuses if s for p in s["partitions"]]
    return (
        sorted(owned) == list(range(partitions))
        and all(s and s["caught_up"] and s["partials_pending"] == 0 for s in statuses)
    )


Sample = tuple[str, frozenset[tuple[str, str]]]


def domain_samples_from_text(text: str, names: set[str] = DOMAIN_NAMES) -> dict[Sample, float]:
    out: dict[Sample, float] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name in names:
                k = (s.name, frozenset(s.labels.items()))
                out[k] = out.get(k, 0.0) + s.value
    return out


def domain_samples_expected(rc: Recount, now: Any) -> dict[Sample, float]:
    out: dict[Sample, float] = {}
    for fam in to_families(rc.aggregates.prometheus_samples(now)):
        for s in fam.samples:
            if s.name in DOMAIN_NAMES:
                k = (s.name, frozenset(s.labels.items()))
                out[k] = out.get(k, 0.0) + s.value
    return out


def without_zeros(c: dict[Sample, float]) -> dict[Sample, float]:
    return {k: v for k, v in c.items() if v}


def diff(a: dict[Sample, float], b: dict[Sample, float], limit: int = 15) -> str:
    keys = sorted(set(a) | set(b), key=str)
    rows = [f"{k[0]}{dict(k[1])}: got {a.get(k)} want {b.get(k)}" for k in keys if a.get(k) != b.get(k)]
    return f"{len(rows)} differences:\n" + "\n".join(rows[:limit])


def dead_letters(settings: Settings, timeout_s: float = 10.0) -> list[DeadLetter]:
    from kafka import TopicPartition

    from hub.kafka import consumer

    cons = consumer(settings.kafka, "tests-dlq")
    try:
        tp = TopicPartition(settings.topics.dead_letter, 0)
        cons.assign([tp])
        cons.seek_to_beginning(tp)
        end = cons.end_offsets([tp])[tp]
        out: list[DeadLetter] = []
        deadline = time.monotonic() + timeout_s
        while cons.position(tp) < end and time.monotonic() < deadline:
            for recs in cons.poll(timeout_ms=500).values():
                out.extend(DeadLetter.parse(r.value) for r in recs)
        return out
    finally:
        cons.close()


def expected_dead_letters(sc: Scenario) -> Counter[str]:
    return Counter(sc.poison.values())
