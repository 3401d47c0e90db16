"""End-to-end latency: a change at the source until the worker has applied it (what /metrics shows).

Set-up, all real processes on loopback: the one-stop simulator over a World on the live clock
(:mod:`bench.source`, its own process), the connector runner (``dvc-hub connectors run``) with one
instance per unit polling every ``poll_interval_s``, and one worker.

Method: the driver creates new dossiers at ``rate``/s and records each creation's wall time.
A sampler reads the applied count every 50 ms and records when it first reached each value; the
latency of the k-th dossier = (time the count first reached k) − (creation time of the k-th).
This pairs the k-th change with the k-th apply, which is exact for a first-in-first-out pipeline and
otherwise still gives the right distribution as long as reordering is small relative to the
sample gap. Resolution: the 50 ms sampling period (+ the producer's few ms of linger).

The applied count is read from Kafka (the end offsets of the worker's ``dossiers`` changelog, one
record per applied change) rather than by scraping /metrics every 50 ms: the worker updates its
table and the figures /metrics reads in the same step, and a /metrics scrape with a city's figures
costs the worker far more than 50 ms of CPU, so scraping that often would measure the scraping.
"""

from __future__ import annotations

import bisect
import json
import re
import sys
import time
from pathlib import Path
from typing import Any

from bench.common import ROOT, ChangelogCounter, WorkerProc, cpu_seconds, percentile, write_config
from hub.broker import free_port
from hub.commands.dlq import read_topic
from hub.config import Settings
from hub.process import ChildProcess

UNITS = ["380", "14767", "14755", "14758", "14761"]


def _connectors_toml(port: int, units: list[str], poll_s: float, start_from: str) -> str:
    blocks = [
        f"""
[[connectors]]
name = "motcua-{u}"
type = "motcua"
base_url = "http://127.0.0.1:{port}/donvi/{u}"
unit_code = "{u}"
poll_interval_s = {poll_s}
page_size = 1000
lookback_s = 120
rate_limit_per_s = 1000.0
auth = {{ kind = "api_key", api_key = "demo-key-{u}" }}
options = {{ start_from = "{start_from}", catalogue = false }}
"""
        for u in units
    ]
    return "\n".join(blocks)


def latency(bootstrap: str, run_dir: Path, *, rate: float, duration: float, poll_s: float = 1.0,
            units: list[str] | None = None, drain_s: float = 90.0) -> dict[str, Any]:
    """Run the source → connectors → worker chain at ``rate`` changes/s; latency percentiles of every change."""
    units = units or UNITS
    port = free_port()
    start_from = time.strftime("%Y%m%d%H%M%S", time.localtime(time.time() - 60))
    cfg, settings = write_config(run_dir, bootstrap, name=f"lat{int(rate)}",
                                 extra=_connectors_toml(port, units, poll_s, start_from))
    tag = f"{int(rate)}-{int(time.time())}"
    go, out = run_dir / f"go-{tag}", run_dir / f"created-{tag}.json"
    source = ChildProcess([sys.executable, "-m", "bench.source", "--port", str(port), "--units", ",".join(units),
                           "--rate", str(rate), "--duration", str(duration), "--go", str(go), "--out", str(out)],
                          run_dir / f"source-{tag}.log", cwd=ROOT, die_with_parent=True)
    worker = WorkerProc(cfg, run_dir, f"lat-{tag}")
    runner = ChildProcess([str(Path(sys.executable).parent / "dvc-hub"), "--config", str(cfg), "connectors", "run"],
                          run_dir / f"connectors-{tag}.log", cwd=ROOT, die_with_parent=True)
    counter = ChangelogCounter(settings)
    seen: list[tuple[float, int]] = []  # (wall time, applied count) whenever the count changed
    try:
        source.start()
        worker.start()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            st = worker.status()
            if st and st.get("ready"):
                break
            time.sleep(0.5)
        else:
            raise TimeoutError(f"the worker did not become ready:\n{worker.tail()}")
        runner.start()
        time.sleep(5.0)  # the runner's first polls (nothing to read yet) and its producer's connection
        base = counter.count()
        go.touch()
        expected = int(rate * duration)
        end = time.monotonic() + duration + drain_s
        last = -1
        while time.monotonic() < end:
            c = counter.count() - base
            if c != last:
                seen.append((time.time(), c))
                last = c
            if c >= expected:
                break
            time.sleep(0.05)
        go.unlink(missing_ok=True)
        for _ in range(100):
            if out.exists():
                break
            time.sleep(0.1)
        created: list[float] = json.loads(out.read_text(encoding="utf-8"))
        worker_cpu, rss = worker.cpu_seconds(), worker.rss_bytes()
        source_cpu = cpu_seconds(source.pid)
        runner_cpu = cpu_seconds(runner.pid)
    finally:
        go.unlink(missing_ok=True)
        counter.close()
        runner.stop()
        worker.stop()
        source.stop()
    counts = [c for _, c in seen]
    lat: list[float] = []
    for k, t_created in enumerate(created, start=1):
        i = bisect.bisect_left(counts, k)
        if i < len(seen):
            lat.append(seen[i][0] - t_created)
    reached = len(lat)
    out_d: dict[str, Any] = {
        "rate_per_s": rate, "duration_s": duration, "poll_interval_s": poll_s, "units": units,
        "lookback_s": 120, "created": len(created), "applied_within_drain": reached, "drain_s": drain_s,
        "sampling_period_s": 0.05,
        "achieved_rate_per_s": round(len(created) / max(1e-9, created[-1] - created[0]), 1) if created else 0,
        "cpu_s": {"worker": round(worker_cpu, 1), "connectors": round(runner_cpu, 1), "source": round(source_cpu, 1)},
        "worker_rss_mib": round(rss / 1048576, 1),
    }
    if lat:
        out_d.update({
            "p50_s": round(percentile(lat, 50), 3), "p90_s": round(percentile(lat, 90), 3),
            "p99_s": round(percentile(lat, 99), 3), "max_s": round(max(lat), 3), "min_s": round(min(lat), 3),
        })
    out_d["stages"] = stage_latencies(settings, created)
    target = poll_s + 1.0
    out_d["target"] = {"p99_max_s": target,
                       "met": bool(lat) and reached == len(created) and out_d["p99_s"] <= target}
    return out_d


_SEQ = re.compile(rb"H56L\.\d+-\d{6}-(\d{7})")


def _first_timestamps(settings: Settings, topic: str) -> dict[int, float]:
    """Change number -> Kafka timestamp (s) of the first record about it in ``topic``.

    The benchmark's dossier codes end in the change's sequence number (``bench.records.snapshot``),
    and each change is a new dossier, so the code in a record's key or value names its change.
    Timestamps are the producers' (CreateTime): when the connector, the normaliser or the state agent
    handed the record to Kafka.
    """
    out: dict[int, float] = {}
    for record in read_topic(settings, topic):  # ordered by partition, then offset
        m = _SEQ.search(record.key or b"") or _SEQ.search(record.value or b"")
        if m:
            out.setdefault(int(m.group(1)), record.timestamp / 1000)
    return out


def stage_latencies(settings: Settings, created: list[float]) -> dict[str, dict[str, float]]:
    """Where the time goes, per change: source → connector's produce → normaliser's → state agent's.

    ``source_to_raw`` is the connector runner (its poll wait, paging, privacy edge, produce);
    ``raw_to_canonical`` the normalising agent; ``canonical_to_state`` the state agent (the table's
    changelog write is what the applied count reads). p50/p99 in seconds over the changes seen in
    both topics of a stage.
    """
    from streams.topics import DOSSIER_TABLE, changelog_topic

    t = settings.topics
    at = {
        "raw": _first_timestamps(settings, t.raw_motcua),
        "canonical": _first_timestamps(settings, t.canonical),
        "state": _first_timestamps(settings, changelog_topic(settings, DOSSIER_TABLE)),
    }
    source = dict(enumerate(created))
    out: dict[str, dict[str, float]] = {}
    for name, a, b in (("source_to_raw", source, at["raw"]), ("raw_to_canonical", at["raw"], at["canonical"]),
                       ("canonical_to_state", at["canonical"], at["state"])):
        d = [b[k] - a[k] for k in a.keys() & b.keys()]
        if d:
            out[name] = {"n": len(d), "p50_s": round(percentile(d, 50), 3), "p99_s": round(percentile(d, 99), 3)}
    return out


def latency_suite(bootstrap: str, run_dir: Path, *, rates: list[float], duration: float,
                  poll_s: float = 1.0) -> dict[str, Any]:
    """The latency run at each rate (the target's 1,000/s first), on one broker."""
    runs = [latency(bootstrap, run_dir, rate=r, duration=duration, poll_s=poll_s) for r in rates]
    return {"benchmark": "latency", "runs": runs}
