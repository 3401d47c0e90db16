"""Render docs/benchmarks.md from the saved results (bench/results/*.json).

Every figure stands beside its target ("met"/"missed"), the method that produced it, the machine and
versions it was measured on, and the command that reproduces it. Extrapolations are labelled as such.
The findings of the profiles (what limits a missed target, for the owners of that code) are kept in
:data:`FINDINGS` and printed with their benchmark.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.common import ROOT

DEFAULT_OUT = ROOT / "docs" / "benchmarks.md"

#: What the profiles showed, per benchmark: written by whoever ran them, kept with the code.
FINDINGS: dict[str, str] = {
    "backlog": (
        "Measured in one run against 4baa9b8 (the portal sync before issue 12). The statistics lane cut the "
        "portal's requests from 1,605 to 603 and the mean PUTs per (unit, period) from 6.7 to 2.0; the dossiers "
        "no longer queue behind statistics: the last one reached the portal 7 s after the last record instead "
        "of 89 s. Still missed: the **maximum** PUTs per key is 10 on both revisions. The worker's catch-up "
        "steps here are 6.7 s apart, longer than `stats_debounce_s` = 5 s, so a key whose figures change at "
        "every step (the current month, quarter and year of a busy unit) is quiet for the debounce between "
        "steps and goes out after each of them; `stats_min_interval_s` only bounds a key that never falls "
        "quiet. The fix left for the next session: after its first push a key waits for the min interval "
        "unless the whole pipeline upstream is caught up (then its final body goes out after the debounce). "
        "Also seen: the sync's `/healthz` said `caught_up` once (1 of 41 samples) while the portal was still "
        "behind, between two steps of the feed. 4baa9b8 is also under the rate limit (about 9 requests/s of 15, "
        "one request at a time with a sync-state write after each)."
    ),
    "throughput": (
        "The table above is a py-spy profile of the worker while it applies (`--profile`: a separate run, "
        "since sampling slows the process it watches a little). Busy time splits into the two agents — the "
        "state agent (table, figures, outbox) about twice the normaliser — then faust's fetching and "
        "dispatching of consumed records, aiokafka's producing and the table's changelog writes. The domain "
        "code proper (`normalize`, `Aggregates.apply_change`, the outbox record) is a quarter of it; the rest "
        "is the price of faust and aiokafka's pure-Python per-record paths: every raw record is consumed "
        "twice (raw, canonical) and produces three records (canonical event, `dossiers` changelog, outbox "
        "item), where the bare consumer consumes once and decodes once. Fixed after the first profile: "
        "(1) produce straight to faust's producer instead of `Topic.send` (its channel machinery cost as much "
        "CPU as the domain code); (2) the outbox record written with orjson instead of a pydantic round "
        "trip; (3) `fmt_compact` without a zoneinfo conversion for values already at +07:00; (4) the C "
        "CRC-32C (`crc32c`) for kafka-python's readers (the partials reader spent 5 % of the worker's busy "
        "time in the pure-Python CRC); (5) `/api/v1/status` reads its counters instead of collecting the "
        "whole registry (a status poll cost ~5 scrapes). Together (the `--baseline` row: the revision before "
        "them, same data, right after) they cut the worker's CPU for the same 60,000 records by a quarter "
        "(63.9 s → 47.2 s) and raised its rate × 1.37 (the C CRC-32C is installed for both, so its share "
        "is not in that ratio). What is left to reach 50 % of the bare consumer is not a hot spot but the "
        "topology: the bare consumer spends ~16 µs per record, the worker ~0.8 ms of CPU, most of it in "
        "the per-record paths of faust's stream, table and producer layers. The options, each a design "
        "change for the owners of "
        "`streams/`: merge the normaliser into the state agent for sources keyed by dossier (one consume "
        "and one produce fewer; tried once and reverted because the reliability runs stalled a topic, see "
        "the stall watchdog in `streams/watchdog.py`), or run the hot loop on aiokafka directly "
        "(`getmany` batches, one changelog produce per batch) and keep faust for tables and recovery only. "
        "A second worker adds a third on 2 cores (§5), where the broker and the measuring process share "
        "the CPUs too; on a machine with more cores, workers (up to the partition count) are the way to "
        "scale."
    ),
    "latency": (
        "Measured per stage from the producers' Kafka timestamps of each change (the table below the "
        "totals). Found and fixed: the one-stop connector read each poll strictly after its cursor "
        "(`NgayCapNhat`, `MaHoSo`), but `NgayCapNhat` has one-second resolution, so a dossier changed "
        "later in the cursor's second whose code sorts lower was only found by the next look-back pass, "
        "up to `lookback_every_s` = 15 s later. That was the latency of the previous revision (100/s: "
        "p50 3.35 s, p99 8.18 s; 1,000/s: p50 7.94 s, p99 10.82 s). Every poll now starts at the cursor's "
        "whole second (the engine's seen-set drops what it re-reads without a Kafka write): at 100/s the "
        "connector stage is the poll interval (p50 ≈ half a poll, p99 ≈ one poll) and the worker's two "
        "agents add tens of milliseconds, so the target is met. At 1,000/s the time goes to the worker: "
        "its two stages queue behind each other (normaliser, then state agent, each p99 of several "
        "seconds) because it needs most of a core at this rate (its pipeline limit is ~1,400/s alone, §1) "
        "and shares the 2 cores with the simulator, the driver, the connector runner and the broker. "
        "What would meet the target at 1,000/s is what lifts §1: the topology change described there, or "
        "a second worker on a machine with spare cores."
    ),
    "backfill": (
        "The backfill rate is the pipeline rate of §1 with one version per dossier, so the same limits "
        "apply: two consumes and three produces per record through faust's per-record paths. The fixes of "
        "§1 took the extrapolated province-year from 101 min (previous revision, under a load average of "
        "5–9) to about 21 min; 15 minutes needs ~2,300 dossiers/s from one worker, or a second worker on a "
        "machine with spare cores (§5), or the topology change described in §1. Producing the input is "
        "not the limit (≈ 10,000 records/s here) and runs concurrently with the worker in a real backfill."
    ),
    "memory": (
        "memory:// keeps every dossier's state as bytes in a Python dict plus the derived aggregates; "
        "rocksdb:// keeps the state on disk, but faust still keeps per-key and changelog bookkeeping and "
        "RocksDB's memtables and block cache add a fixed cost; the slope per dossier is what decides the "
        "1 M figure. Install for rocksdb://: `pip install 'faust-streaming[rocksdict]'` "
        "(rocksdict 0.3.29 was used)."
    ),
}


def _met(ok: bool | None) -> str:
    return "—" if ok is None else ("**met**" if ok else "**missed**")


def _f(x: Any, nd: int = 0) -> str:
    if x is None:
        return "—"
    if isinstance(x, float | int):
        return f"{x:,.{nd}f}"
    return str(x)


def _env_line(r: dict[str, Any]) -> str:
    env = r.get("env", {})
    m, v = env.get("machine", {}), env.get("versions", {})
    ver = ", ".join(f"{k} {val}" for k, val in v.items())
    return (f"*Measured {r.get('measured_at', '?')} on {m.get('cpu', '?')}, {m.get('cores', '?')} cores, "
            f"{m.get('memory_gib', '?')} GiB, {m.get('os', '?')}, load average at start "
            f"{m.get('load_average_1_5_15', '?')}; {ver}. "
            f"Reproduce: `{r.get('command', 'python -m bench')}` ({r.get('run_s', '?')} s).*")


def _throughput(r: dict[str, Any]) -> list[str]:
    p, inp = r["pipeline"], r["input"]
    bare = r["bare_consumer"]
    return [
        "## 1. Pipeline throughput against the bare consumer",
        "",
        "| figure | value | target | |",
        "|---|---|---|---|",
        f"| pipeline, one worker (steady) | {_f(p['steady_rate'])} records/s | | |",
        (f"| bare consumer: aiokafka + RawRecord decode (median of {bare['n']:.0f}) | {_f(bare['median'])} records/s "
        f"(runs: {', '.join(_f(x) for x in r['bare_consumer_rates'])}) | | |"),
        f"| **pipeline ÷ bare consumer** | **{r['ratio'] * 100:.1f} %** | ≥ 50 % | {_met(r['target']['met'])} |",
        f"| bare consumer without decoding | {_f(r['read_only_rate'])} records/s | | |",
        f"| pipeline, wall (start-up {p['startup_s']} s included) | {_f(p['wall_rate'])} records/s | | |",
        f"| worker CPU for the run | {p['cpu_s'][0]} s over {p['wall_s']} s wall | | |",
        *([(f"| baseline: the worker of `{r['baseline']['revision']}`, same data, right after | "
             f"{_f(r['baseline']['steady_rate'])} records/s; CPU {r['baseline']['cpu_s'][0]} s | "
             f"this revision × {p['steady_rate'] / r['baseline']['steady_rate']:.2f} | |")]
          if r.get("baseline") else []),
        (f"| producing the input (kafka-python, acks=all, idempotent; generation included) | "
        f"{_f(r['produce']['records_per_s'])} records/s | | |"),
        "",
        (f"Method: {inp['records']:,} raw one-stop records ({inp['dossiers']:,} dossiers × "
        f"{inp['versions_per_dossier']} versions, ~{r['produce']['bytes'] // max(1, inp['records']):,} bytes each, "
        f"{inp['topic_partitions']} partitions) "
        "are produced to a raw topic. The bare consumer reads them all from the beginning and decodes each "
        "into a `RawRecord` (pydantic) — twice before the pipeline run and once after it, on the same broker "
        "and data, so noise from the shared machine shows as spread. Then a real worker process "
        "(`python -m hub.commands.worker`, fresh app id) is started on that topic; the end offsets of its "
        "`dossiers` changelog (one record per applied change) are polled every 0.25 s from outside until "
        "they reach the number of records. Steady rate = records ÷ (last poll − first poll with an applied "
        "record): the worker's start-up is excluded. Every record was applied exactly once "
        f"(applied {_f(p['applies'].get('applied'))}, duplicate {_f(p['applies'].get('duplicate'))})."),
        "",
        *_profile_table(p.get("profile")),
    ]


#: The parts of a worker's work, each the inclusive share of one function of the py-spy profile.
PROFILE_PARTS = (
    ("normaliser agent (raw → canonical), all of it",
     "register.<locals>.normalize_agent (streams/agents/normalizer.py)"),
    ("state agent (canonical → table, figures, outbox), all of it",
     "register.<locals>.dossier_state (streams/agents/dossier_state.py)"),
    ("— normalising one record (`streams.normalize.normalize`)", "normalize (streams/normalize.py)"),
    ("— updating the figures (`Aggregates.apply_change`)", "Aggregates.apply_change (streams/domain/aggregates.py)"),
    ("— building and sending the outbox item", "_send_outbox (streams/agents/dossier_state.py)"),
    ("faust: fetching and dispatching consumed records", "Consumer._drain_messages (faust/transport/consumer.py)"),
    ("faust: table changelog writes (producer buffer)", "ProducerBuffer._handle_pending (faust/transport/producer.py)"),
    ("aiokafka: producing (all sends)", "AIOKafkaProducer.send (aiokafka/producer/producer.py)"),
    ("aiokafka: produce requests on the wire", "Sender._send_produce_req (aiokafka/producer/sender.py)"),
    ("partials: reading the merged figures (kafka-python thread)", "PartialsReader._run (streams/merged.py)"),
    ("partials: publishing this worker's figures", "HubRuntime.publish_partials (streams/app.py)"),
)


def _profile_table(prof: dict[str, Any] | None) -> list[str]:
    if not prof or not prof.get("busy_samples"):
        return []
    inclusive = dict(prof["inclusive_pct"])
    rows = [f"| {label} | {inclusive[fn]:.1f} % |" for label, fn in PROFILE_PARTS if fn in inclusive]
    own = ", ".join(f"`{fn.split(' (')[0]}` {pct:.1f} %" for fn, pct in prof["own_pct"][:8])
    return [
        (f"Where the worker's busy time went (py-spy, {_f(prof['busy_samples'])} busy samples while it applied; "
         "idle waits left out; shares are inclusive and overlap):"),
        "",
        "| part | share of busy samples |",
        "|---|---|",
        *rows,
        "",
        f"Most own time: {own}.",
        "",
    ]


def _latency(r: dict[str, Any]) -> list[str]:
    out = [
        "## 2. End-to-end latency, source change → applied (what /metrics shows)",
        "",
        "| changes/s (achieved) | poll | changes | applied | p50 | p90 | p99 | max | target p99 | |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    out.extend(
        (
            f"| {_f(run['rate_per_s'])} ({_f(run['achieved_rate_per_s'])}) | {run['poll_interval_s']} s | "
            f"{_f(run['created'])} | {_f(run['applied_within_drain'])} | {_f(run.get('p50_s'), 2)} s | "
            f"{_f(run.get('p90_s'), 2)} s | {_f(run.get('p99_s'), 2)} s | {_f(run.get('max_s'), 2)} s | "
            f"≤ {run['target']['p99_max_s']} s | {_met(run['target']['met'])} |"
        )
        for run in r["runs"]
    )
    staged = [run for run in r["runs"] if run.get("stages")]
    if staged:
        names = (("source_to_raw", "source → raw topic (connector runner)"),
                 ("raw_to_canonical", "raw → canonical (normaliser)"),
                 ("canonical_to_state", "canonical → state changelog (state agent)"))
        out += ["", "Where the time goes, per change (p50 / p99, from the producers' Kafka timestamps):", "",
                "| stage | " + " | ".join(f"{_f(run['rate_per_s'])}/s" for run in staged) + " |",
                "|---|" + "---|" * len(staged)]
        for key, label in names:
            cells = []
            for run in staged:
                st = run["stages"].get(key)
                cells.append(f"{_f(st['p50_s'], 2)} s / {_f(st['p99_s'], 2)} s" if st else "–")
            out.append(f"| {label} | " + " | ".join(cells) + " |")
    out += ["", "CPU seconds used during each run (worker / connector runner / simulator + driver): " + "; ".join(
        f"{_f(run['rate_per_s'])}/s: {run['cpu_s']['worker']} / {run['cpu_s']['connectors']} / "
        f"{run['cpu_s']['source']} "
        f"over {run['duration_s']:g} s of changes" for run in r["runs"]) + ".", ""]
    run0 = r["runs"][0] if r["runs"] else {}
    out += [
        ("Method: the one-stop simulator (a `World` on the live clock, its own process) serves "
        f"{len(run0.get('units', []))} units; the connector runner (`dvc-hub connectors run`) polls each with "
        f"`poll_interval_s` = {run0.get('poll_interval_s')} s, `page_size` 1000 and the contract's look-back "
        f"(`lookback_s` = {run0.get('lookback_s')}); one worker. A driver creates new dossiers at the given rate "
        "(round-robin over the units) and records each creation's wall time. A sampler reads the applied "
        "count every 50 ms and records when it first reached each value; latency of the k-th change = "
        "time the count first reached k − creation time of the k-th change (exact for a FIFO pipeline; "
        "resolution 50 ms). The count is read from Kafka (the end offsets of the worker's `dossiers` "
        "changelog) rather than by scraping /metrics every 50 ms: the worker changes its table and the "
        "figures /metrics serves in the same step, and a scrape costs the worker more than 50 ms of CPU "
        "(see the findings), so scraping that often would measure the scraping. Changes not applied "
        f"within {run0.get('drain_s')} s after the driver stopped are counted as not applied, and a run "
        "with any such change misses its target."),
        "",
    ]
    return out


def _backfill(r: dict[str, Any]) -> list[str]:
    p, py = r["pipeline"], r["province_year"]
    label = "measured" if r["measured_at_full_size"] else f"**extrapolated** from {r['input']['dossiers']:,} dossiers"
    return [
        "## 3. Backfill of a province-year (2 million dossiers) through one worker",
        "",
        "| figure | value | target | |",
        "|---|---|---|---|",
        (f"| measured: {r['input']['dossiers']:,} dossiers processed | {p['wall_s']} s wall "
        f"(start-up {p['startup_s']} s), steady {_f(p['steady_rate'])} dossiers/s | | |"),
        (f"| measured: producing them (kafka-python, acks=all) | {r['produce']['seconds']} s, "
        f"{_f(r['produce']['records_per_s'])} records/s, {r['produce']['mib_per_s']} MiB/s | | |"),
        (f"| 2,000,000 dossiers through one worker ({label}) | {py['process_s'] / 60:,.1f} min | ≤ 15 min | "
        f"{_met(r['target']['met'])} |"),
        f"| producing 2,000,000 raw records ({label}) | {py['produce_s'] / 60:,.1f} min | | |",
        f"| worker RSS at the end | {p['rss_mib_settled'][0]} MiB | | |",
        "",
        ("Method: one current snapshot per dossier (a backfill reads what the sources serve now; superseded "
        "versions are no longer served), in the scenario's shape (35 units, 2021, levels 3/4, three "
        "channels, finished and open dossiers), each a new code; produced to the raw topic first (timed to "
        "the last acknowledgement), then one worker (memory:// store) is timed as in §1. The extrapolation is "
        "start-up + 2,000,000 ÷ steady rate (the rate does not fall with the table size in the measured "
        "range; see the samples in bench/results/backfill.json). Full size: "
        "`python -m bench backfill --dossiers 2000000`."),
        "",
    ]


def _memory(r: dict[str, Any]) -> list[str]:
    out = [
        "## 4. Worker memory with 1 million dossiers in state: memory:// against rocksdb://",
        "",
        "| store | dossiers in state | RSS measured | bytes/dossier (2nd half) | RSS at 1 M | target | |",
        "|---|---|---|---|---|---|---|",
    ]
    n = r["input"]["dossiers"]
    for store, run in r["runs"].items():
        if "error" in run:
            out.append(f"| {store} | — | {run['error']} | | | ≤ 1,024 MiB | — |")
            continue
        fit = r["fits"][store]
        lab = "measured" if fit["measured_at_full_size"] else "extrapolated"
        out.append(
            f"| {store} | {n:,} | {fit['rss_mib_end']} MiB | {_f(fit['bytes_per_dossier'])} | "
            f"{_f(fit['extrapolated_rss_mib_at_1m'])} MiB ({lab}) | ≤ 1,024 MiB | {_met(fit['met'])} |"
        )
    out += [
        "",
        ("Method: the backfill input (§3) is processed by one worker per store (fresh app id each); the "
        "worker's resident set (VmRSS from /proc) is sampled at every progress poll and once more 2 s "
        "after the last record. Bytes per dossier = (RSS when all were applied − RSS when half were) ÷ "
        "(half the dossiers): start-up allocations (imports, buffers) are excluded from the slope. RSS at "
        "1 M = final RSS + slope × (1 M − measured dossiers), a linear extrapolation. Full size: "
        "`python -m bench memory --dossiers 1000000`."),
        "",
    ]
    return out


def _scaling(r: dict[str, Any]) -> list[str]:
    one, two = r["one_worker"], r["two_workers"]
    return [
        "## 5. Two workers against one",
        "",
        "| workers | steady records/s | wall records/s (start-up incl.) | start-up | CPU s per worker | partitions |",
        "|---|---|---|---|---|---|",
        (f"| 1 | {_f(one['steady_rate'])} | {_f(one['wall_rate'])} | {one['startup_s']} s | {one['cpu_s']} | "
        f"{one['partitions']} |"),
        (f"| 2 | {_f(two['steady_rate'])} | {_f(two['wall_rate'])} | {two['startup_s']} s | {two['cpu_s']} | "
        f"{two['partitions']} |"),
        f"| **speed-up** | **× {r['speedup_steady']}** | × {r['speedup_wall']} | | | |",
        "",
        (f"Method: {r['input']['records']:,} records ({r['input']['dossiers']:,} dossiers × "
        f"{r['input']['versions_per_dossier']} versions) on 4 partitions, produced once; one worker, then two "
        "workers started together (same app id, so Kafka splits the partitions), each run with a fresh app "
        "id on the same input; timed as in §1 (the two workers' applies summed). No target; on 2 cores the "
        "broker, the two workers and the measuring process share the CPUs."),
        "",
    ]


def _domain(r: dict[str, Any]) -> list[str]:
    rows = [f"| {label} | {_f(value, 1)} {r['units'].get(label, '')} |" for label, value in r["best"].items()]
    return [
        "## Domain micro-benchmarks (no Kafka, no faust)",
        "",
        "| figure | best of " + str(r["repeats"]) + " |",
        "|---|---|",
        *rows,
        "",
        (f"Method: `python -m tests.domain.bench_domain {r['n']}`: the pure functions the worker calls per "
        "event, timed over n records; the floor under the pipeline's cost per record."),
        "",
    ]


def _backlog_cells(run: dict[str, Any]) -> list[str]:
    req, st, d, h = run["requests"], run["stats"], run["dossiers"], run.get("healthz", {})
    ppk = st["puts_per_key"]
    after = run.get("dossiers_drained_after_feed_s")
    health = "not reported"
    if h.get("reports_caught_up"):
        health = (f"first at {_f(h.get('caught_up_first_s'), 1)} s; said so while behind in "
                  f"{h.get('caught_up_while_behind', 0)} of {h.get('samples', 0)} samples")
    return [
        str(run.get("revision", run.get("name", "?"))),
        f"{_f(run['portal_rate_limit_per_s'])} / {_f(run['hub_rate_limit_per_s'])} requests/s",
        f"{_f(d['at_newest'])} of {_f(d['expected'])}",
        (f"{_f(run['dossiers_drained_s'], 1)} s ({_f(after, 1)} s after the last record)"
         if run["dossiers_drained_s"] is not None else "not drained"),
        f"{_f(run['stats_converged_s'], 1)} s" if run["stats_converged_s"] is not None else
        f"not converged ({st['mismatched_count']} bodies differ or are missing)",
        f"{_f(run['last_stats_put_s'], 1)} s",
        f"{_f(req['total'])}",
        f"{_f(req['stats_puts'])} PUTs / {_f(req['dossier_posts'])} POSTs (+ {_f(req['progress_posts'])} progress)",
        f"{_f(req['429'])}",
        f"**{_f(ppk['max'])}** / {_f(ppk['mean'], 2)} / {_f(ppk['p95'])} over {_f(st['keys'])} keys",
        ", ".join(st["periods_held"]) or "—",
        health,
        (run["error"] or "converged") + (
            "; settings this revision does not have, left out: " + ", ".join(f"`{k}`" for k in ignored)
            if (ignored := run.get("portal_settings_ignored")) else ""),
        _met(run["target"]["met"]),
    ]


BACKLOG_ROWS = (
    "portal sync of", "rate limit: portal simulator / hub setting", "dossiers at the portal at their newest version",
    "time to drain the dossiers (from the first record fed)", "statistics converged after", "last statistics PUT at",
    "requests the portal received", "statistics PUTs vs dossier POSTs (attempts)", "429s received",
    "accepted PUTs per (unit, period): max / mean / p95", "periods pushed", "/healthz `caught_up`", "end of run",
    "target",
)


def _backlog(r: dict[str, Any]) -> list[str]:
    inp, runs = r["input"], r["runs"]
    names = [n for n in ("current", "baseline") if runs.get(n)]
    cells = {n: _backlog_cells(runs[n]) for n in names}
    heads = {"current": "this checkout", "baseline": "baseline"}
    out = [
        "## 6. A province-year backlog through the portal sync, at the portal's rate limit",
        "",
        "| | " + " | ".join(heads[n] for n in names) + " |",
        "|---|" + "---|" * len(names),
    ]
    out += [f"| {label} | " + " | ".join(cells[n][i] for n in names) + " |" for i, label in enumerate(BACKLOG_ROWS)]
    pw = inp["periods_with_figures_per_unit"]
    span = str(pw["min"]) if pw["min"] == pw["max"] else f"{pw['min']}–{pw['max']}"
    out += [
        "",
        (f"Input: {inp['units_fed']} one-stop units of the registry, {_f(inp['dossiers_fed'])} dossiers received over "
         f"the {inp['months']} months up to the run (about one in ten left open for good, the others finished "
         f"within a few weeks, the newest still open), {_f(inp['outbox_items'])} outbox items (one per version), "
         f"{_f(inp['partial_records'])} partials in {inp['updates']} steps over {inp['feed_s']:g} s; a unit has "
         f"figures in {span} periods. "
         "Portal sync settings: the defaults"
         + (", with " + ", ".join(f"`{k} = {v}`" for k, v in inp["portal_settings"].items())
            if inp.get("portal_settings") else "") + "."),
        "",
        ("Method: the input is what the worker writes, built with the domain code before anything is timed: "
         "raw one-stop snapshots normalised by `normalize_motcua`, applied with `streams.domain.state.apply`, "
         "counted by `Aggregates` (so open dossiers carry “open at the period's end” into every month up to "
         "today), outbox items from `outbox_record` signed with the outbox key, partials as `UnitFigures`, the "
         "catalogue as the worker's catalogue-table changelog. The replay, in order of the snapshots' change "
         "times, is cut into steps fed at even intervals: each step writes its dossier versions to the outbox, "
         "then the changed partials of every (partition, unit) it touched, as the worker does while it "
         "catches up. The portal sync is `dvc-hub push run` (a child process of the checkout measured; the "
         "baseline from a temporary `git worktree`) on the embedded Kafka broker with fresh topics; the portal "
         "is the simulator at its rate limit, in a thread of the benchmark, whose holdings are read every "
         "0.5 s. Dossiers are drained when the portal holds every dossier at its newest version; statistics "
         "have converged when every (unit, period) body the portal holds equals the body built from the "
         "final partials (`stats_body`, generation stamp ignored), every unit's current month is held, and "
         f"no statistics PUT came for {inp['quiet_s']:g} s. Times count from the first record fed. PUTs per "
         "(unit, period) are the PUTs the portal accepted (its replacement history); the request counts are "
         "every request it received, refused ones included. Target (issue 12): at most "
         "a handful (5) of PUTs per (unit, period) and every dossier at the portal within 5 minutes of the "
         "last record. Full size against main: `python -m bench backlog --baseline 4baa9b8`."),
        "",
    ]
    return out


SECTIONS = (("throughput", _throughput), ("latency", _latency), ("backfill", _backfill), ("memory", _memory),
            ("scaling", _scaling), ("domain", _domain), ("backlog", _backlog))


#: How each benchmark's summary row and section begin in the markdown (to keep those not run again).
ROW_PREFIXES = {"throughput": "| 1. ", "latency": "| 2. ", "backfill": "| 3. ", "memory": "| 4. ",
                "scaling": "| 5. ", "domain": "| domain ", "backlog": "| 6. "}
HEADING_PREFIXES = {"throughput": "## 1. ", "latency": "## 2. ", "backfill": "## 3. ", "memory": "## 4. ",
                    "scaling": "## 5. ", "domain": "## Domain", "backlog": "## 6. "}


def kept_parts(previous: str) -> tuple[dict[str, str], dict[str, list[str]]]:
    """The summary rows and sections (heading to the next heading) of an earlier markdown, by benchmark."""
    lines = previous.splitlines()
    rows = {name: line for line in lines for name, prefix in ROW_PREFIXES.items() if line.startswith(prefix)}
    starts = [i for i, line in enumerate(lines) if line.startswith("## ")]
    sections: dict[str, list[str]] = {}
    for j, i in enumerate(starts):
        block = lines[i : starts[j + 1] if j + 1 < len(starts) else len(lines)]
        while block and not block[-1].strip():
            block.pop()
        for name, prefix in HEADING_PREFIXES.items():
            if lines[i].startswith(prefix):
                sections[name] = [*block, ""]
    return rows, sections


def render(results: dict[str, dict[str, Any]], out: Path | None = DEFAULT_OUT, *, keep: bool = True) -> str:
    """The markdown for ``results``; written to ``out`` unless it is None.

    With ``keep``, a benchmark without a saved result keeps its summary row and section from the
    markdown already at ``out``: results are git-ignored, so on a fresh checkout running one
    benchmark must not erase the figures of the others measured earlier.
    """
    rows: dict[str, str] = {}
    kept: dict[str, list[str]] = {}
    if keep and out is not None and out.exists():
        rows, kept = kept_parts(out.read_text(encoding="utf-8"))
    lines = [
        "# Benchmarks",
        "",
        "Generated by `make bench` (`.venv/bin/python -m bench`) from `bench/results/*.json`; do not edit by hand.",
        ("Each benchmark starts its own Kafka broker (the embedded one, in a temporary directory, on free "
        "ports) and real worker processes; nothing is mocked. The machine is shared and noisy (2 cores), so "
        "comparisons are ratios measured in one run, back to back on the same broker and data, and short "
        "measurements are repeated. Timings are never asserted in tests (`tests/bench/` only checks that "
        "the harness still produces numbers)."),
        "",
    ]
    summary = []
    for name, _ in SECTIONS:
        r = results.get(name)
        if r is not None:
            summary.append(_summary_row(name, r))
        elif name in rows:
            summary.append(rows[name])
    if summary:
        lines += ["| benchmark | figure | target | |", "|---|---|---|---|", *summary, ""]
    for name, fn in SECTIONS:
        r = results.get(name)
        if r is None:
            lines += kept.get(name, [])
            continue
        lines += fn(r)
        if name in FINDINGS:
            lines += ["**What limits it (profile).** " + FINDINGS[name], ""]
        lines += [_env_line(r), ""]
    text = "\n".join(lines).rstrip() + "\n"
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text, encoding="utf-8")
    return text


def _summary_row(name: str, r: dict[str, Any]) -> str:
    if name == "throughput":
        return (f"| 1. throughput | pipeline {_f(r['pipeline']['steady_rate'])}/s = {r['ratio'] * 100:.1f} % of the "
                f"bare consumer | ≥ 50 % | {_met(r['target']['met'])} |")
    if name == "latency":
        cells = [f"{_f(x['rate_per_s'])}/s: p50 {_f(x.get('p50_s'), 2)} s, p99 {_f(x.get('p99_s'), 2)} s "
                 f"({_met(x['target']['met'])})" for x in r["runs"]]
        return f"| 2. latency | {'; '.join(cells)} | p99 ≤ poll + 1 s | |"
    if name == "backfill":
        lab = "" if r["measured_at_full_size"] else " (extrapolated)"
        return (f"| 3. backfill | 2 M dossiers in {r['province_year']['process_s'] / 60:,.1f} min{lab} | ≤ 15 min | "
                f"{_met(r['target']['met'])} |")
    if name == "memory":
        cells = [f"{s}: {_f(f['extrapolated_rss_mib_at_1m'])} MiB at 1 M"
                 f"{'' if f['measured_at_full_size'] else ' (extrapolated)'} ({_met(f['met'])})"
                 for s, f in r["fits"].items()]
        return f"| 4. memory | {'; '.join(cells) or 'no run'} | ≤ 1 GiB | |"
    if name == "scaling":
        return f"| 5. two workers | × {r['speedup_steady']} of one worker | — | |"
    if name == "backlog":
        cells = []
        for label, run in (("", r["runs"].get("current")), ("baseline: ", r["runs"].get("baseline"))):
            if not run:
                continue
            drained = run["dossiers_drained_s"]
            conv = run["stats_converged_s"]
            cells.append(
                f"{label}dossiers {'in ' + _f(drained, 0) + ' s' if drained is not None else 'not drained'}, "
                f"statistics {'in ' + _f(conv, 0) + ' s' if conv is not None else 'not converged'}, "
                f"max {run['stats']['puts_per_key']['max']} PUTs per (unit, period) ({_met(run['target']['met'])})")
        return (f"| 6. backlog ({_f(r['input']['dossiers_fed'])} dossiers) | {'; '.join(cells)} | ≤ 5 PUTs per key, "
                "dossiers ≤ 5 min after the data | |")
    return f"| domain | {', '.join(f'{k}: {_f(v, 1)}' for k, v in list(r['best'].items())[:3])} | — | |"
