"""``dvc-hub report``: the city's figures for a period, from the hub's live state in Kafka.

Where the numbers come from (no worker needs to be asked, and it does not matter which worker
holds which partition):

* **counts**: the compacted partials topic (``topics.partials``), read to its end; the latest
  :class:`schemas.figures.UnitFigures` of every ``"<partition>|<unit>"`` key, added up with
  :func:`schemas.figures.merge_counts`;
* **catalogue** (procedures offered, "no dossier" procedures): the changelog of the worker's
  ``catalogue`` table (``<app_id>-catalogue-changelog``, compacted, written by faust), read to its
  end; each value is ``{"p": partition, "o": offset, "e": CatalogueEntry}``.

Examples::

    dvc-hub report --period 2021-Q1
    dvc-hub report --period 2021-Q1 --unit 14767 --format json
    dvc-hub report --from 2020-09 --to 2021-03 --unit 14767 --format csv
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections import Counter
from collections.abc import Callable
from typing import Any

from hub.config import KafkaSettings, Settings, load_settings

log = logging.getLogger(__name__)

BROKER_HINT = "start it with `dvc-hub up` or `dvc-hub broker start`, or fix kafka.bootstrap_servers"
READ_TIMEOUT_S = 30.0
BOOTSTRAP_TIMEOUT_MS = 5_000


class BrokerUnreachableError(Exception):
    """Kafka did not answer; the message says how to start it."""


def read_compacted(kafka: KafkaSettings, topic: str, timeout_s: float = READ_TIMEOUT_S) -> dict[bytes, bytes]:
    """Latest value of every key of ``topic``, read from the beginning to the end offsets of *now*.

    A missing topic reads as empty (no worker has written it yet). Tombstones remove their key.
    """
    import time

    from kafka import TopicPartition
    from kafka.errors import KafkaError

    from hub.kafka import consumer

    try:
        # Fail in seconds, not the 30 s default, when nothing listens: the user is waiting.
        cons = consumer(kafka, "report", request_timeout_ms=int(timeout_s * 1000) + 1000,
                        bootstrap_timeout_ms=BOOTSTRAP_TIMEOUT_MS,
                        # Partial figures are large records: fetch them in big bites.
                        max_partition_fetch_bytes=16 * 1024 * 1024, fetch_max_bytes=64 * 1024 * 1024)
    except KafkaError as exc:
        raise BrokerUnreachableError(
            f"Kafka at {kafka.bootstrap_servers} is unreachable ({exc}); {BROKER_HINT}"
        ) from None
    try:
        parts = cons.partitions_for_topic(topic)
        if not parts:
            return {}
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        cons.assign(tps)
        cons.seek_to_beginning(*tps)
        ends = cons.end_offsets(tps)
        latest: dict[bytes, bytes] = {}
        # A stall timeout, not a total one: a long topic that keeps arriving is read to its end.
        deadline = time.monotonic() + timeout_s
        while any(cons.position(tp) < ends[tp] for tp in tps):
            if time.monotonic() > deadline:
                raise BrokerUnreachableError(
                    f"reading {topic} made no progress for {timeout_s:.0f}s; {BROKER_HINT}"
                )
            polled = cons.poll(timeout_ms=500, max_records=5000)
            if polled:
                deadline = time.monotonic() + timeout_s
            for records in polled.values():
                for r in records:
                    if r.key is None:
                        continue
                    if r.value is None:
                        latest.pop(r.key, None)
                    else:
                        latest[r.key] = r.value
        return latest
    finally:
        cons.close()


def live_counts(settings: Settings) -> dict[str, Counter[str]]:
    """Unit code -> counts, summed over the latest partial of every partition."""
    from schemas.figures import UnitFigures, merge_counts

    raw = read_compacted(settings.kafka, settings.topics.partials)
    return merge_counts(UnitFigures.model_validate_json(v) for v in raw.values())


def live_catalogue(settings: Settings) -> Any:
    """The procedure catalogue the workers hold, from the catalogue table's changelog.

    Decoded as the portal sync decodes it (:class:`hub.sync.stats.LiveCatalogue`): one reader of
    that format, which skips an unreadable value instead of failing the report.
    """
    from hub.sync.stats import LiveCatalogue
    from streams.topics import CATALOGUE_TABLE, changelog_topic

    live = LiveCatalogue()
    for v in read_compacted(settings.kafka, changelog_topic(settings, CATALOGUE_TABLE)).values():
        live.apply(v)
    if live.unreadable:
        log.warning("skipped %d unreadable catalogue changelog records", live.unreadable)
    return live.catalogue


def make_report(settings: Settings, period: Any, unit: str | None) -> Any:
    """Build the :class:`streams.domain.report.Report` from the live state in Kafka."""
    from schemas.units import UnitRegistry, default_registry
    from streams.domain.report import build_report

    registry = UnitRegistry.load(settings.unit_registry) if settings.unit_registry else default_registry()
    return build_report(
        live_counts(settings), live_catalogue(settings), registry, period, unit, settings.targets, settings.kpi
    )


def _period(args: argparse.Namespace) -> Any:
    """``--period P`` -> ``"P"``; ``--from A --to B`` -> ``("A", "B")`` (validated; ValueError otherwise)."""
    from streams.domain.periods import period_bounds, period_months

    if args.period:
        if args.date_from or args.date_to:
            raise ValueError("give either --period or --from/--to, not both")
        period_bounds(args.period)
        return args.period
    if args.date_from and args.date_to:
        rng = (args.date_from, args.date_to)
        if not period_months(rng):
            raise ValueError(f"--from {args.date_from} is after --to {args.date_to}")
        return rng
    raise ValueError("give --period (e.g. 2021-Q1, 2021-03, 2021) or both --from and --to (e.g. 2020-09)")


def _run(args: argparse.Namespace, out: Callable[[str], object] = print) -> int:
    from streams.domain.report import render

    settings = load_settings(args.config)
    try:
        period = _period(args)
    except ValueError as exc:
        print(f"dvc-hub report: {exc}", file=sys.stderr)
        return 2
    try:
        report = make_report(settings, period, args.unit)
    except BrokerUnreachableError as exc:
        print(f"dvc-hub report: {exc}", file=sys.stderr)
        return 1
    out(render(report, args.format))
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``dvc-hub report``."""
    p = subparsers.add_parser(
        "report", help="figures of a period (online dossiers by level, timeliness, Decision 766) from the live hub",
        description="Report from the hub's live state in Kafka (the partials topic and the catalogue changelog).",
    )
    p.add_argument("--period", help="2021-Q1, 2021-03 or 2021")
    p.add_argument("--from", dest="date_from", metavar="YYYY-MM", help="first month of a range (with --to)")
    p.add_argument("--to", dest="date_to", metavar="YYYY-MM", help="last month of a range, inclusive")
    p.add_argument("--unit", help="GSO code of one unit (380 = the city one-stop desk itself)")
    p.add_argument("--format", choices=("table", "json", "csv"), default="table")
    p.set_defaults(func=_run)
