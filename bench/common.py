"""What every benchmark shares: the machine's description, a private broker, hub configs, worker processes.

Everything runs on loopback, on free ports, with unique topic names and consumer groups, so a benchmark
never touches a demo or a test running on the same machine. The broker is a real Kafka started by
:class:`hub.broker.EmbeddedBroker` in a temporary directory (``die_with_parent``: it cannot outlive
the benchmark).

Example::

    with bench_broker() as broker:
        cfg, settings = write_config(Path("/tmp/x"), broker.bootstrap, name="demo")
        with WorkerProc(cfg, Path("/tmp/x"), "w1") as w:
            w.wait_ready(60)
            print(w.applied(), w.rss_bytes())
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import re
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import httpx

from hub.broker import EmbeddedBroker, free_port
from hub.config import Settings, TopicSettings, load_settings
from hub.kafka import ensure_topics, hub_topics
from hub.process import ChildProcess

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = ROOT / "bench" / "results"

_APPLIES_RE = re.compile(r'^dvchub_state_applies_total\{outcome="([a-z_]+)"\} ([0-9.e+]+)$', re.MULTILINE)
_LAG_RE = re.compile(r'^dvchub_consumer_lag_records\{[^}]*topic="([^"]+)"\} ([0-9.e+]+)$', re.MULTILINE)


# --------------------------------------------------------------------------- machine and versions


def _read(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def machine() -> dict[str, Any]:
    """CPU model, cores, memory and OS of this machine (from /proc; no extra package)."""
    cpu = "unknown"
    for line in _read("/proc/cpuinfo").splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem_kib = 0
    for line in _read("/proc/meminfo").splitlines():
        if line.startswith("MemTotal:"):
            mem_kib = int(line.split()[1])
    os_name = platform.platform()
    for line in _read("/etc/os-release").splitlines():
        if line.startswith("PRETTY_NAME="):
            os_name = f"{line.split('=', 1)[1].strip(chr(34))} (kernel {platform.release()})"
    load = _read("/proc/loadavg").split()[:3]
    return {
        "load_average_1_5_15": " ".join(load),  # at the start of the run: how busy the shared machine was
        "cpu": cpu,
        "cores": os.cpu_count() or 0,
        "memory_gib": round(mem_kib / 1024 / 1024, 1),
        "os": os_name,
    }


def kafka_version() -> str:
    """The Kafka release the embedded broker runs (pinned in deploy/kafka/pom.xml)."""
    from hub.broker import pinned_kafka_version

    return pinned_kafka_version()


def versions() -> dict[str, str]:
    """Python, Kafka and the client libraries the figures were measured with."""
    out = {"python": platform.python_version(), "kafka": kafka_version()}
    for dist in ("faust-streaming", "aiokafka", "kafka-python", "pydantic", "orjson", "rocksdict"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "not installed"
    return out


# --------------------------------------------------------------------------- statistics


def summary(values: list[float]) -> dict[str, float]:
    """best / median / worst of repeated measurements (best = max for rates)."""
    return {"best": max(values), "median": statistics.median(values), "worst": min(values), "n": len(values)}


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty list."""
    s = sorted(values)
    k = max(0, min(len(s) - 1, round(q / 100 * len(s) + 0.5) - 1))
    return s[k]


# --------------------------------------------------------------------------- broker and configs


@contextlib.contextmanager
def bench_broker(bootstrap: str | None = None) -> Iterator[Any]:
    """A broker for the benchmark: the given one, or a fresh embedded Kafka in a temp dir."""
    if bootstrap:
        yield type("External", (), {"bootstrap": bootstrap})()
        return
    with tempfile.TemporaryDirectory(prefix="dvc-bench-kafka-") as tmp:
        broker = EmbeddedBroker(
            Path(tmp), port=free_port(), controller_port=free_port(), num_partitions=4, heap="1g",
            die_with_parent=True, secure=False,  # clients are built from plain settings
        )
        broker.start(timeout=120)
        try:
            yield broker
        finally:
            broker.stop()


def write_config(
    run_dir: Path, bootstrap: str, *, name: str, raw_motcua: str | None = None, partitions: int = 4,
    store: str = "memory://", app_id: str | None = None, extra: str = "", topics_prefix: str | None = None,
) -> tuple[Path, Settings]:
    """A hub TOML for one benchmark run: unique topics and app id; the raw one-stop topic may be shared.

    Sharing ``raw_motcua`` between runs is how two pipelines read *the same* pre-produced input while
    each keeps its own canonical topic, tables and consumer group (so neither sees the other's output).
    """
    uid = uuid.uuid4().hex[:8]
    prefix = topics_prefix or f"bench-{name}-{uid}"
    names = {attr: f"{prefix}.{default}" for attr, default in TopicSettings().model_dump().items()}
    if raw_motcua:
        names["raw_motcua"] = raw_motcua
    topics = "\n".join(f'{k} = "{v}"' for k, v in names.items())
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / f"hub-{name}-{uid}.toml"
    path.write_text(
        f"""
# A benchmark against its own broker and simulated sources: the demo profile's public secrets.
profile = "demo"

[kafka]
bootstrap_servers = "{bootstrap}"
partitions = {partitions}

[embedded_broker]
enabled = false

[worker]
app_id = "{app_id or f"bench-{name}-{uid}"}"
store = "{store}"
data_dir = "{(run_dir / f"worker-{name}-{uid}").as_posix()}"
web_port = {free_port()}

[connector_runner]
port = {free_port()}

[portal_sync]
port = {free_port()}

[portal]
enabled = false

[topics]
{topics}
{extra}
""",
        encoding="utf-8",
    )
    settings = load_settings(path)
    ensure_topics(settings.kafka, hub_topics(settings))
    return path, settings


# --------------------------------------------------------------------------- processes


def rss_bytes(pid: int) -> int:
    """Resident set size of a process (VmRSS from /proc), 0 once it is gone."""
    for line in _read(f"/proc/{pid}/status").splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used (from /proc/PID/stat)."""
    parts = _read(f"/proc/{pid}/stat").rsplit(")", 1)[-1].split()
    if len(parts) < 13:
        return 0.0
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(parts[11]) + int(parts[12])) / ticks


class WorkerProc(ChildProcess):
    """``python -m hub.commands.worker`` on its own web port, read through /metrics and /api/v1/status."""

    def __init__(self, config: Path, run_dir: Path, name: str, store: str | None = None,
                 tree: Path | None = None) -> None:
        self.port = free_port()
        argv = [sys.executable, "-m", "hub.commands.worker", "--config", str(config), "--web-port", str(self.port)]
        if store:
            argv += ["--store", store]
        # tree: another checkout of the hub (``git worktree``) whose code this worker runs. ``python -m``
        # puts its working directory first on sys.path, ahead of the editable install of this one.
        super().__init__(argv, run_dir / f"worker-{name}-{self.port}.log", cwd=tree or ROOT, die_with_parent=True)
        self.http = httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=10)

    def stop(self, timeout: float = 30.0) -> None:
        super().stop(timeout)
        self.http.close()

    def status(self) -> dict[str, Any] | None:
        try:
            r = self.http.get("/api/v1/status")
        except httpx.HTTPError:
            return None
        return r.json() if r.status_code == 200 else None

    def metrics_text(self) -> str | None:
        try:
            r = self.http.get("/metrics")
        except httpx.HTTPError:
            return None
        return r.text if r.status_code == 200 else None

    def applies(self) -> dict[str, float] | None:
        """``dvchub_state_applies_total`` by outcome, from /metrics (None while the server is not up)."""
        text = self.metrics_text()
        if text is None:
            return None
        return {m.group(1): float(m.group(2)) for m in _APPLIES_RE.finditer(text)}

    def lag(self) -> dict[str, float] | None:
        text = self.metrics_text()
        if text is None:
            return None
        return {m.group(1): float(m.group(2)) for m in _LAG_RE.finditer(text)}

    def rss_bytes(self) -> int:
        return rss_bytes(self.pid)

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.pid)


@dataclass
class Progress:
    """When a pipeline run reached each milestone (monotonic seconds) and what it saw."""

    started: float
    first_applied_at: float | None = None
    done_at: float | None = None
    applied: float = 0.0
    samples: list[tuple[float, float, int]] = field(default_factory=list)  # (t, applied, rss of worker 0)

    def steady_rate(self, n: int) -> float:
        """Records/s from the first applied record to the last (start-up and rebalance excluded)."""
        assert self.first_applied_at is not None
        assert self.done_at is not None
        return n / max(1e-9, self.done_at - self.first_applied_at)

    def wall_s(self) -> float:
        assert self.done_at is not None
        return self.done_at - self.started


class ChangelogCounter:
    """Counts the state applies of an app from Kafka: the end offsets of its ``dossiers`` changelog.

    Every applied event (and only those) writes one record to the table's changelog, so the sum of its
    end offsets is the ``applied`` count, read without asking the worker anything. Scraping the
    worker instead would perturb what is measured: one /metrics scrape with a city's figures costs
    the worker ~0.3 s of CPU (see docs/benchmarks.md).
    """

    def __init__(self, settings: Settings) -> None:
        from hub.kafka import consumer
        from streams.topics import DOSSIER_TABLE, changelog_topic

        self.topic = changelog_topic(settings, DOSSIER_TABLE)
        self._consumer = consumer(settings.kafka, "bench-progress")
        self._tps: list[Any] = []

    def count(self) -> int:
        from kafka import TopicPartition

        if not self._tps:
            self._consumer.topics()  # refresh metadata: the worker creates the topic on start
            parts = self._consumer.partitions_for_topic(self.topic)
            if not parts:
                return 0
            self._tps = [TopicPartition(self.topic, p) for p in sorted(parts)]
        return int(sum(self._consumer.end_offsets(self._tps).values()))

    def close(self) -> None:
        self._consumer.close()


def wait_applied(
    workers: list[WorkerProc], settings: Settings, n: int, timeout: float, *, every: float = 0.25,
) -> Progress:
    """Poll the changelog's end offsets until ``n`` state applies have been written (all workers).

    Resolution: ``every`` seconds plus the producer's linger (a few ms).
    """
    prog = Progress(started=time.monotonic())
    deadline = prog.started + timeout
    counter = ChangelogCounter(settings)
    try:
        while time.monotonic() < deadline:
            for w in workers:
                if not w.alive():
                    raise RuntimeError(f"worker {w.log_path.name} exited:\n{w.tail()}")
            total = float(counter.count())
            now = time.monotonic()
            if total > 0 and prog.first_applied_at is None:
                prog.first_applied_at = now
            prog.applied = total
            prog.samples.append((round(now - prog.started, 3), total, workers[0].rss_bytes()))
            if total >= n:
                prog.done_at = now
                return prog
            time.sleep(every)
    finally:
        counter.close()
    tails = "\n".join(f"--- {w.log_path.name}\n{w.tail()}" for w in workers)
    raise TimeoutError(f"the pipeline applied {prog.applied:.0f} of {n} records in {timeout:.0f}s\n{tails}")


def wait_lag_zero(workers: list[WorkerProc], topic: str, timeout: float = 30.0) -> float | None:
    """Seconds until every worker reports lag 0 on ``topic`` (the lag gauge refreshes every ~2 s)."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        lags = [w.lag() or {} for w in workers]
        if all(topic in lag for lag in lags) and all(lag[topic] == 0 for lag in lags):
            return time.monotonic() - t0
        time.sleep(0.5)
    return None


# --------------------------------------------------------------------------- results


def save_result(name: str, result: dict[str, Any]) -> Path:
    """Write ``bench/results/<name>.json`` (git-ignored) and return its path."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    path.write_text(json.dumps(result, indent=2, ensure_ascii=False, default=str), encoding="utf-8")
    return path


def load_results(results_dir: Path = RESULTS_DIR) -> dict[str, dict[str, Any]]:
    """Every saved result, by benchmark name."""
    out: dict[str, dict[str, Any]] = {}
    if results_dir.is_dir():
        for p in sorted(results_dir.glob("*.json")):
            with contextlib.suppress(ValueError):
                out[p.stem] = json.loads(p.read_text(encoding="utf-8"))
    return out


def mib(n: float) -> float:
    return round(n / 1024 / 1024, 1)
