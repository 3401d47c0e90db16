"""``python -m bench [NAME] [options]``: run the benchmarks and write docs/benchmarks.md.

Without NAME every benchmark runs at its default scale (about 15 minutes on 2 cores, plus the
backlog's drain: 5-10 minutes, up to ``--timeout``); with NAME only that one. Each result is saved as
``bench/results/<name>.json`` (with the machine, the versions and the command) and docs/benchmarks.md
is rendered from every saved result, so running one benchmark again updates its section and keeps the
others (a benchmark without a saved result keeps the section it has in the markdown).

Examples::

    python -m bench                                  # everything, default scale
    python -m bench throughput --dossiers 10000      # 30,000 records
    python -m bench backfill --dossiers 2000000      # the full province-year
    python -m bench memory --dossiers 1000000        # 1 M dossiers in state, memory:// and rocksdb://
    python -m bench latency --rates 1000 --duration 60
    python -m bench backlog --baseline 4baa9b8       # a province-year backlog through the portal sync, before/after
    python -m bench report                           # re-render the markdown from saved results
"""

from __future__ import annotations

import argparse
import shlex
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.common import RESULTS_DIR, bench_broker, load_results, machine, save_result, versions
from bench.report import DEFAULT_OUT, render

NAMES = ("throughput", "latency", "backfill", "memory", "scaling", "domain", "backlog")
DEFAULTS: dict[str, int] = {"throughput": 3_000, "scaling": 3_000, "backfill": 50_000, "memory": 50_000,
                            "domain": 20_000, "backlog": 20_000}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("name", nargs="?", default="all", choices=("all", *NAMES, "report"),
                   help="which benchmark (default: all); 'report' only re-renders the markdown")
    p.add_argument("--dossiers", type=int, help="dossiers for the chosen benchmark (overrides --scale)")
    p.add_argument("--scale", type=float, default=1.0, help="multiply every default size (0.05 = smoke run)")
    p.add_argument("--rates", default="1000,100", help="latency: changes/s, comma-separated (default 1000,100)")
    p.add_argument("--duration", type=float, default=30.0, help="latency: seconds of changes per rate (default 30)")
    p.add_argument("--poll", type=float, default=1.0, help="latency: connectors' poll_interval_s (default 1)")
    p.add_argument("--repeats", type=int, default=3, help="repeats of short measurements (default 3)")
    p.add_argument("--profile", action="store_true",
                   help="throughput: sample the worker with py-spy while it applies (the shares go in the result)")
    p.add_argument("--baseline", metavar="REV",
                   help="throughput: also run the worker of this git revision on the same input (before/after); "
                   "backlog: also drain the same backlog through the portal sync of this revision")
    b = p.add_argument_group("backlog (a province-year backlog drained through the portal simulator)")
    b.add_argument("--units", type=int, default=35, help="one-stop units, from the registry (default 35: all)")
    b.add_argument("--months", type=int, default=12, help="months of history up to now (default 12)")
    b.add_argument("--updates", type=int, default=10,
                   help="steps of the worker's catch-up: partials rewritten this many times (default 10)")
    b.add_argument("--feed-s", type=float, default=60.0, help="seconds over which the steps are fed (default 60)")
    b.add_argument("--rate", type=float,
                   help="the portal simulator's rate limit, requests/s (default: the simulator's own)")
    b.add_argument("--quiet-s", type=float, default=10.0,
                   help="no statistics PUT for this long before the statistics count as converged (default 10)")
    b.add_argument("--timeout", type=float, default=1800.0, help="give up after this many seconds (default 1800)")
    b.add_argument("--set", dest="portal_set", action="append", default=[], metavar="KEY=VALUE",
                   help="a [portal] setting of the portal sync under test, value as TOML (repeatable), "
                   "e.g. --set stats_debounce_s=5")
    p.add_argument("--skip", default="", help="with 'all': benchmarks to leave out, comma-separated")
    p.add_argument("--bootstrap", help="use this Kafka instead of starting a private embedded broker")
    p.add_argument("--results-dir", type=Path, default=RESULTS_DIR, help="where results JSON go")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="the markdown to write (default docs/benchmarks.md)")
    p.add_argument("--no-report", action="store_true", help="do not write the markdown")
    return p


def _size(args: argparse.Namespace, name: str) -> int:
    if args.dossiers and args.name == name:
        return int(args.dossiers)
    return max(50, int(DEFAULTS[name] * args.scale))


def _command(args: argparse.Namespace, name: str) -> str:
    """The command that reproduces ``name`` at the size just run."""
    parts = ["python", "-m", "bench", name]
    if name in DEFAULTS:
        parts += ["--dossiers", str(_size(args, name))]
    if name == "throughput" and args.profile:
        parts += ["--profile"]
    if name == "throughput" and args.baseline is not None:
        parts += ["--baseline", args.baseline]
    if name == "latency":
        parts += ["--rates", args.rates, "--duration", f"{args.duration:g}", "--poll", f"{args.poll:g}"]
    if name == "backlog":
        parts += ["--units", str(args.units), "--months", str(args.months), "--updates", str(args.updates),
                  "--feed-s", f"{args.feed_s:g}"]
        if args.rate is not None:
            parts += ["--rate", f"{args.rate:g}"]
        parts += ["--quiet-s", f"{args.quiet_s:g}", "--timeout", f"{args.timeout:g}"]
        for item in args.portal_set:
            parts += ["--set", item]
        if args.baseline is not None:
            parts += ["--baseline", args.baseline]
    return shlex.join(parts)


def backlog_spec(args: argparse.Namespace) -> Any:
    """The :class:`bench.backlog.BacklogSpec` of the command line."""
    from bench.backlog import BacklogSpec

    settings: dict[str, str] = {}
    for item in args.portal_set:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise SystemExit(f"--set takes KEY=VALUE (a [portal] setting), got {item!r}")
        settings[key.strip()] = value.strip()
    return BacklogSpec(units=args.units, dossiers=_size(args, "backlog"), months=args.months, updates=args.updates,
                       feed_s=args.feed_s, rate=args.rate, timeout_s=args.timeout, quiet_s=args.quiet_s,
                       portal_settings=settings)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.name == "report":
        print(render(load_results(args.results_dir), args.out))
        return 0
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    names = [n for n in NAMES if n not in skip] if args.name == "all" else [args.name]
    env = {"machine": machine(), "versions": versions()}
    from bench import common

    common.RESULTS_DIR = args.results_dir
    with tempfile.TemporaryDirectory(prefix="dvc-bench-") as tmp:
        run_dir = Path(tmp)
        with bench_broker(args.bootstrap) as broker:
            bs = broker.bootstrap
            shared: dict[str, Any] = {}
            for name in names:
                started = time.monotonic()
                print(f"== {name} ...", file=sys.stderr, flush=True)
                result = _run(name, args, bs, run_dir / name, shared)
                result["env"] = env
                result["measured_at"] = datetime.now(UTC).isoformat(timespec="seconds")
                result["command"] = _command(args, name)
                result["run_s"] = round(time.monotonic() - started, 1)
                path = save_result(name, result)
                print(f"== {name} done in {result['run_s']} s -> {path}", file=sys.stderr, flush=True)
    if not args.no_report:
        render(load_results(args.results_dir), args.out)
        print(f"wrote {args.out}", file=sys.stderr)
    return 0


def _run(name: str, args: argparse.Namespace, bs: str, run_dir: Path, shared: dict[str, Any]) -> dict[str, Any]:
    from bench import pipeline

    run_dir.mkdir(parents=True, exist_ok=True)
    if name == "throughput":
        return pipeline.throughput(bs, run_dir, dossiers=_size(args, name), repeats=args.repeats, profile=args.profile,
                                   baseline=args.baseline)
    if name == "scaling":
        return pipeline.scaling(bs, run_dir, dossiers=_size(args, name))
    if name == "backfill":
        n = _size(args, name)
        topic, produced = pipeline.produce_backfill_input(bs, run_dir, n)
        res = pipeline.backfill(bs, run_dir, dossiers=n, topic=topic, produced=produced)
        shared["backfill"] = (n, topic, produced, res["pipeline"])
        return res
    if name == "memory":
        n = _size(args, name)
        reuse = shared.get("backfill")
        if reuse and reuse[0] == n:  # same input already produced and run with memory:// by backfill
            return pipeline.memory(bs, run_dir, dossiers=n, topic=reuse[1], produced=reuse[2], memory_run=reuse[3])
        return pipeline.memory(bs, run_dir, dossiers=n)
    if name == "latency":
        from bench.latency import latency_suite

        rates = [float(r) for r in args.rates.split(",") if r.strip()]
        return latency_suite(bs, run_dir, rates=rates, duration=args.duration, poll_s=args.poll)
    if name == "domain":
        from bench.domain import domain

        return domain(_size(args, name), repeats=args.repeats)
    if name == "backlog":
        from bench.backlog import backlog_bench

        return backlog_bench(bs, run_dir, backlog_spec(args), baseline=args.baseline)
    raise ValueError(name)


if __name__ == "__main__":
    sys.exit(main())
