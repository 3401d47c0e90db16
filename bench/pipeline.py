"""Benchmarks of the stream worker on pre-produced input: throughput, scaling, backfill, memory.

All four follow one method: raw one-stop records are produced to a raw topic first (timed), then one
or more real worker processes (``python -m hub.commands.worker``, the production entry point) are
started on that topic with a fresh app id, and /metrics is polled every 0.25 s until the
``dvchub_state_applies_total{outcome="applied"}`` counters (summed over the workers) reach the number
of records. Two rates come out of each run:

* **steady**: records ÷ (time of the last poll − time of the first poll that saw an applied record),
  i.e. without the worker's start-up (imports, group join, table recovery);
* **wall**: records ÷ (time from the process start to the end), start-up included.

The worker's RSS (VmRSS) is sampled at each poll; CPU seconds come from /proc at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path
from typing import Any

from bench.bare import bare_consume
from bench.common import (
    WorkerProc,
    mib,
    summary,
    wait_applied,
    wait_lag_zero,
    write_config,
)
from bench.profile import SamplingProfile, checkout, revision, summarise
from bench.records import dossier_records, produce

PARTITIONS = 4


def run_pipeline(
    bootstrap: str, run_dir: Path, raw_topic: str, n: int, *, name: str, workers: int = 1,
    store: str = "memory://", timeout: float = 1800, profile: bool = False, tree: Path | None = None,
) -> dict[str, Any]:
    """Start ``workers`` workers (one app id) on ``raw_topic`` and time them until ``n`` records are applied.

    ``profile``: sample the first worker with py-spy while it applies (:mod:`bench.profile`).
    ``tree``: run the workers from that checkout of the hub (a baseline revision) instead of this one.
    """
    cfg, settings = write_config(run_dir, bootstrap, name=name, raw_motcua=raw_topic, store=store,
                                 partitions=PARTITIONS)
    procs = [WorkerProc(cfg, run_dir, f"{name}-{i}", store, tree) for i in range(workers)]
    sampler: SamplingProfile | None = None
    raw_profile = run_dir / f"{name}.pyspy.txt"
    try:
        for p in procs:
            p.start()
        if profile:
            first = procs[0]
            sampler = SamplingProfile(first.pid, raw_profile,
                                      lambda: bool((first.status() or {}).get("records_processed"))).start()
        prog = wait_applied(procs, settings, n, timeout)
        if sampler is not None:
            sampler.stop()
        assert prog.first_applied_at is not None
        cpu = [round(p.cpu_seconds(), 1) for p in procs]
        rss_end = [p.rss_bytes() for p in procs]
        lag_s = wait_lag_zero(procs, raw_topic, timeout=20)
        applies = [p.applies() or {} for p in procs]
        statuses = [p.status() or {} for p in procs]
        time.sleep(2.0)  # let allocations settle, then sample RSS once more
        rss_settled = [p.rss_bytes() for p in procs]
    finally:
        if sampler is not None:
            sampler.stop()
        for p in procs:
            p.stop(60)
    result: dict[str, Any] = {
        "records": n,
        "workers": workers,
        "store": store,
        "app_id": settings.worker.app_id,
        "startup_s": round(prog.first_applied_at - prog.started, 2),
        "processing_s": round(prog.done_at - prog.first_applied_at, 2) if prog.done_at else None,
        "wall_s": round(prog.wall_s(), 2),
        "steady_rate": round(prog.steady_rate(n), 1),
        "wall_rate": round(n / prog.wall_s(), 1),
        "cpu_s": cpu,
        "rss_mib_end": [mib(r) for r in rss_end],
        "rss_mib_settled": [mib(r) for r in rss_settled],
        "raw_lag_zero_after_s": round(lag_s, 1) if lag_s is not None else None,
        "applies": {k: sum(a.get(k, 0.0) for a in applies) for k in ("applied", "duplicate", "stale", "replayed")},
        "partitions": [s.get("partitions") for s in statuses],
        "samples": prog.samples,
    }
    if profile and raw_profile.exists():
        result["profile"] = summarise(raw_profile)
    return result


# --------------------------------------------------------------------------- 1. throughput


def throughput(bootstrap: str, run_dir: Path, *, dossiers: int, versions: int = 3, repeats: int = 3,
               profile: bool = False, baseline: str | None = None) -> dict[str, Any]:
    """Pipeline (one worker) vs the bare consumer, on the same broker and the same records, back to back.

    ``baseline``: a git revision whose worker is run on the same input right after (a before/after
    ratio of a change, measured in one run).
    """
    n = dossiers * versions
    _, settings = write_config(run_dir, bootstrap, name="tp-input", partitions=PARTITIONS)
    topic = settings.topics.raw_motcua
    produced = produce(settings, topic, dossier_records(dossiers, versions=versions))
    # Bare consumer before and after the pipeline: a noisy neighbour shows as a spread between them.
    bare_runs = [asyncio.run(bare_consume(bootstrap, topic, n)) for _ in range(max(1, repeats - 1))]
    pipe = run_pipeline(bootstrap, run_dir, topic, n, name="tp-pipeline")
    bare_runs.append(asyncio.run(bare_consume(bootstrap, topic, n)))
    read_only = asyncio.run(bare_consume(bootstrap, topic, n, decode=False))
    bare = summary([r.rate for r in bare_runs])
    ratio = pipe["steady_rate"] / bare["median"]
    base = None
    if baseline is not None:
        with checkout(baseline) as tree:
            base = run_pipeline(bootstrap, run_dir, topic, n, name="tp-baseline", tree=tree)
        base["revision"] = revision(baseline)
    if profile:  # a run of its own: py-spy's sampling slows the worker it watches a little
        pipe["profile"] = run_pipeline(bootstrap, run_dir, topic, n, name="tp-profile", profile=True).get("profile")
    return {
        "baseline": base,
        "benchmark": "throughput",
        "input": {"dossiers": dossiers, "versions_per_dossier": versions, "records": n, "topic_partitions": PARTITIONS},
        "produce": produced.as_dict(),
        "bare_consumer_rates": [round(r.rate, 1) for r in bare_runs],
        "bare_consumer": {k: round(v, 1) for k, v in bare.items()},
        "read_only_rate": round(read_only.rate, 1),
        "pipeline": pipe,
        "ratio": round(ratio, 3),
        "target": {"ratio_min": 0.5, "met": ratio >= 0.5},
    }


# --------------------------------------------------------------------------- 5. scaling


def scaling(bootstrap: str, run_dir: Path, *, dossiers: int, versions: int = 3) -> dict[str, Any]:
    """One worker, then two workers (one app id, 4 partitions), on the same pre-produced records."""
    n = dossiers * versions
    _, settings = write_config(run_dir, bootstrap, name="sc-input", partitions=PARTITIONS)
    topic = settings.topics.raw_motcua
    produced = produce(settings, topic, dossier_records(dossiers, versions=versions, prefix="H56S"))
    one = run_pipeline(bootstrap, run_dir, topic, n, name="sc-one", workers=1)
    two = run_pipeline(bootstrap, run_dir, topic, n, name="sc-two", workers=2)
    return {
        "benchmark": "scaling",
        "input": {"dossiers": dossiers, "versions_per_dossier": versions, "records": n, "topic_partitions": PARTITIONS},
        "produce": produced.as_dict(),
        "one_worker": one,
        "two_workers": two,
        "speedup_steady": round(two["steady_rate"] / one["steady_rate"], 2),
        "speedup_wall": round(two["wall_rate"] / one["wall_rate"], 2),
    }


# --------------------------------------------------------------------------- 3. backfill, 4. memory

PROVINCE_YEAR = 2_000_000
BACKFILL_TARGET_S = 15 * 60
MEMORY_TARGET_DOSSIERS = 1_000_000
MEMORY_TARGET_BYTES = 1 << 30


def produce_backfill_input(bootstrap: str, run_dir: Path, dossiers: int) -> tuple[str, dict[str, Any]]:
    """One current snapshot per dossier (what a backfill reads from a source), produced and timed."""
    _, settings = write_config(run_dir, bootstrap, name="bf-input", partitions=PARTITIONS)
    topic = settings.topics.raw_motcua
    produced = produce(settings, topic, dossier_records(dossiers, versions=1, prefix="H56B"))
    return topic, produced.as_dict()


def _rss_at(samples: list[Any], applied: float) -> float | None:
    """RSS (bytes) of the first sample at or past ``applied`` records."""
    for _t, a, rss in samples:
        if a >= applied:
            return float(rss)
    return None


def memory_fit(run: dict[str, Any]) -> dict[str, Any]:
    """RSS per dossier from the second half of a run (start-up allocations excluded), extrapolated to 1 M."""
    n = run["records"]
    lo, hi = _rss_at(run["samples"], n * 0.5), _rss_at(run["samples"], n)
    end = run["rss_mib_settled"][0] * 1048576
    per = (hi - lo) / (n * 0.5) if lo is not None and hi is not None and hi > lo else None
    at_target = end + per * (MEMORY_TARGET_DOSSIERS - n) if per is not None else None
    return {
        "rss_mib_at_half": mib(lo) if lo else None,
        "rss_mib_end": run["rss_mib_settled"][0],
        "bytes_per_dossier": round(per) if per is not None else None,
        "extrapolated_rss_mib_at_1m": mib(at_target) if at_target is not None else None,
        "measured_at_full_size": n >= MEMORY_TARGET_DOSSIERS,
        "met": (end if n >= MEMORY_TARGET_DOSSIERS else (at_target or float("inf"))) <= MEMORY_TARGET_BYTES,
    }


def backfill(bootstrap: str, run_dir: Path, *, dossiers: int, topic: str | None = None,
             produced: dict[str, Any] | None = None) -> dict[str, Any]:
    """A province-year of dossiers (or a fraction, extrapolated) through one memory:// worker."""
    if topic is None:
        topic, produced = produce_backfill_input(bootstrap, run_dir, dossiers)
    assert produced is not None
    run = run_pipeline(bootstrap, run_dir, topic, dossiers, name="bf-memory", timeout=7200)
    full = dossiers >= PROVINCE_YEAR
    produce_2m = PROVINCE_YEAR / produced["records_per_s"]
    process_2m = run["wall_s"] if full else run["startup_s"] + PROVINCE_YEAR / run["steady_rate"]
    return {
        "benchmark": "backfill",
        "input": {"dossiers": dossiers, "records": dossiers, "versions_per_dossier": 1,
                  "topic_partitions": PARTITIONS, "province_year_dossiers": PROVINCE_YEAR},
        "produce": produced,
        "pipeline": run,
        "measured_at_full_size": full,
        "province_year": {
            "produce_s": round(produce_2m, 1),
            "process_s": round(process_2m, 1),
            "extrapolated": not full,
        },
        "target": {"max_s": BACKFILL_TARGET_S, "met": process_2m <= BACKFILL_TARGET_S},
        "memory": memory_fit(run),
    }


def memory(bootstrap: str, run_dir: Path, *, dossiers: int, topic: str | None = None,
           produced: dict[str, Any] | None = None, memory_run: dict[str, Any] | None = None) -> dict[str, Any]:
    """Worker RSS with ``dossiers`` dossiers in state: memory:// against rocksdb:// (same input)."""
    if topic is None:
        topic, produced = produce_backfill_input(bootstrap, run_dir, dossiers)
    runs: dict[str, Any] = {}
    runs["memory://"] = memory_run or run_pipeline(bootstrap, run_dir, topic, dossiers, name="mem-memory",
                                                   timeout=7200)
    try:
        import rocksdict  # noqa: F401
    except ImportError:
        runs["rocksdb://"] = {"error": "rocksdict is not installed: pip install 'faust-streaming[rocksdict]'"}
    else:
        with contextlib.suppress(TimeoutError, RuntimeError):
            runs["rocksdb://"] = run_pipeline(bootstrap, run_dir, topic, dossiers, name="mem-rocksdb",
                                              store="rocksdb://", timeout=7200)
        runs.setdefault("rocksdb://", {"error": "the rocksdb:// worker failed; see its log in the run directory"})
    fits = {store: memory_fit(r) for store, r in runs.items() if "error" not in r}
    return {
        "benchmark": "memory",
        "input": {"dossiers": dossiers, "records": dossiers, "versions_per_dossier": 1, "topic_partitions": PARTITIONS},
        "produce": produced,
        "runs": runs,
        "fits": fits,
        "target": {"max_mib": 1024, "dossiers": MEMORY_TARGET_DOSSIERS,
                   "met": {store: f["met"] for store, f in fits.items()}},
    }
