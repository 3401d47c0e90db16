"""``dvc-hub push``: run the portal sync, or see how far behind it is.

Examples::

    dvc-hub push run                  # the service (dvc-hub up starts it for you)
    dvc-hub push status               # backlog per kind, oldest unpushed age, breaker state, last errors
    dvc-hub push stats --from 2021-01 # enqueue the statistics of every period since January 2021, once
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import re
import signal
import urllib.request
from datetime import UTC, date, datetime
from typing import Any

import httpx
from kafka import TopicPartition

from hub.config import Settings, load_service_settings, load_settings
from hub.kafka import consumer, ensure_topics, hub_topics, producer, read_topic
from hub.sync.outbox import DossierState, StatsState, parse_state, stats_digest, stats_state_key
from hub.sync.service import SyncService
from hub.sync.signing import sign
from hub.sync.stats import DomainStatsBuilder, LiveCatalogue, history_items
from schemas.figures import OutboxStats, UnitFigures
from schemas.units import UnitRegistry, default_registry

__all__ = ["backlog", "enqueue_history", "outbox_records", "register"]

log = logging.getLogger(__name__)
BREAKER_NAMES = {0: "closed", 1: "half-open", 2: "open"}


def _run(args: argparse.Namespace) -> int:
    settings = load_service_settings(args.config, "push run")
    if not settings.portal.enabled:
        print("dvc-hub: portal sync is disabled (portal.enabled = false); nothing to do")
        return 0
    ensure_topics(settings.kafka, hub_topics(settings))

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, stop.set)
        await SyncService(settings).run(stop)

    asyncio.run(main())
    return 0


def backlog(settings: Settings, group_id: str, scan_limit: int = 20_000) -> dict[str, Any]:
    """Unpushed outbox items (after the group's committed offsets): count and oldest age per kind."""
    c = consumer(settings.kafka, "push-status", group_id=None)
    try:
        topic = settings.topics.outbox
        parts = [TopicPartition(topic, p) for p in sorted(c.partitions_for_topic(topic) or ())]
        if not parts:
            return {"error": f"topic {topic} does not exist yet"}
        committed_c = consumer(settings.kafka, "push-status-offsets", group_id=group_id)
        try:
            committed = {tp: committed_c.committed(tp) or 0 for tp in parts}
        finally:
            committed_c.close()
        end = c.end_offsets(parts)
        kinds: dict[str, dict[str, Any]] = {k: {"count": 0, "oldest": None} for k in ("dossier", "stats")}
        c.assign(parts)
        for tp in parts:
            c.seek(tp, committed[tp])
        scanned = 0
        while scanned < scan_limit and any(c.position(tp) < end[tp] for tp in parts):
            for records in c.poll(timeout_ms=1000).values():
                for record in records:
                    scanned += 1
                    try:
                        item = json.loads(record.value)
                        kind = "stats" if item.get("type") == "stats" else "dossier"
                        created = datetime.fromisoformat(item["created_at"])
                    except (TypeError, ValueError, KeyError, AttributeError):
                        continue
                    entry = kinds[kind]
                    entry["count"] += 1
                    if created.tzinfo is None:
                        created = created.replace(tzinfo=UTC)
                    if entry["oldest"] is None or created < entry["oldest"]:
                        entry["oldest"] = created
        total = sum(end[tp] - committed[tp] for tp in parts)
        now = datetime.now(UTC)
        return {
            "unpushed_records": total,
            "scanned": scanned,
            "kinds": {k: {"count": v["count"],
                          "oldest_age_s": round((now - v["oldest"]).total_seconds(), 1) if v["oldest"] else 0.0}
                      for k, v in kinds.items()},
        }
    finally:
        c.close()


def _metrics(settings: Settings) -> dict[str, float] | None:
    host = settings.portal_sync.host
    url = f"http://{host}:{settings.portal_sync.port}/metrics"
    try:
        with urllib.request.urlopen(url, timeout=3) as response:
            text = response.read().decode()
    except OSError:
        return None
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("dvchub_portal_") and " " in line:
            name, _, value = line.rpartition(" ")
            with contextlib.suppress(ValueError):
                out[name] = float(value)
    return out


def _health(settings: Settings) -> dict[str, Any] | None:
    """The running portal sync's ``/healthz`` (backlog per lane, caught up), or None when unreachable."""
    scheme = "https" if settings.api.tls_certfile is not None else "http"
    url = f"{scheme}://{settings.portal_sync.host}:{settings.portal_sync.port}/healthz"
    try:
        response = httpx.get(url, timeout=3, verify=False)  # noqa: S501 - our own loopback listener
        found = response.json()
    except (httpx.HTTPError, ValueError):
        return None
    return found if isinstance(found, dict) else None


def _status(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    from hub.commands.dlq import read_topic

    group = f"{settings.kafka.client_id_prefix}-portal-sync"
    report = backlog(settings, group)
    print(f"outbox backlog: {report.get('unpushed_records', '?')} records")
    for kind, entry in report.get("kinds", {}).items():
        print(f"  {kind:<8} {entry['count']:>7} unpushed, oldest {entry['oldest_age_s']:.0f} s")
    health = _health(settings)
    if health is not None and isinstance(health.get("backlog"), dict):
        lanes = health["backlog"]
        print(f"portal sync: {'caught up' if health.get('caught_up') else 'catching up'}; outbox "
              f"{lanes.get('outbox', '?')} uncommitted, {lanes.get('dossiers_pending', '?')} dossiers in hand, "
              f"{lanes.get('stats_pending', '?')} statistics bodies pending")
    metrics = _metrics(settings)
    if metrics is None:
        print("breaker: unknown (the sync service's /metrics is not reachable; is `dvc-hub push run` running?)")
    else:
        state = int(metrics.get("dvchub_portal_breaker_state", 0))
        print(f"breaker: {BREAKER_NAMES.get(state, state)}")
        retries = {k: v for k, v in metrics.items() if k.startswith("dvchub_portal_retries_total")}
        for name, value in sorted(retries.items()):
            print(f"  {name} {value:.0f}")
    rejected: list[DossierState] = []
    for record in read_topic(settings, settings.topics.sync_state):
        with contextlib.suppress(ValueError):
            state_rec = parse_state(record.value or b"")
            if isinstance(state_rec, DossierState) and state_rec.outcome == "rejected":
                rejected.append(state_rec)
    rejected.sort(key=lambda s: s.at)
    print(f"last errors (refused by the portal, see `dvc-hub dlq list --stage portal_sync`): {len(rejected)}")
    for s in rejected[-5:]:
        print(f"  {s.at:%Y-%m-%d %H:%M:%S} {s.ma_ho_so}: {s.detail[:100]}")
    return 0


def _month(value: str) -> date:
    if not re.fullmatch(r"[1-9][0-9]{3}-(0[1-9]|1[0-2])", value):
        raise argparse.ArgumentTypeError(f"a month is written YYYY-MM, like 2021-01; got {value!r}")
    year, month = value.split("-")
    return date(int(year), int(month), 1)


def _next_month(first: date) -> date:
    return date(first.year + first.month // 12, first.month % 12 + 1, 1)


def enqueue_history(
    settings: Settings, start: date, end: date | None = None, *, now: datetime | None = None
) -> tuple[int, int]:
    """Write the statistics of every period with figures starting in ``[start, end)`` to the outbox.

    Bodies are built as the portal sync builds them (the partials and the catalogue changelog, read
    to their end; :func:`hub.sync.stats.history_items`), signed like every outbox item, keyed
    ``stats|<ky>|<unit>``; the portal sync folds them into its statistics lane and pushes each once
    (and never one the portal already holds: those are skipped here already). Returns (enqueued,
    skipped as unchanged).
    """
    from streams.topics import CATALOGUE_TABLE, changelog_topic  # imports faust: only here

    now = now or datetime.now(UTC)
    partials = []
    for record in _read_all(settings, settings.topics.partials) or ():
        if record.value is not None:
            with contextlib.suppress(ValueError):
                partials.append(UnitFigures.model_validate_json(record.value))
    catalogue = LiveCatalogue()
    changelog = _read_all(settings, changelog_topic(settings, CATALOGUE_TABLE))
    if changelog is None:
        log.warning("no catalogue changelog yet (no worker ran): procedures offered will read 0")
    for record in changelog or ():
        catalogue.apply(record.value)
    acked: dict[str, str] = {}
    for record in _read_all(settings, settings.topics.sync_state) or ():
        with contextlib.suppress(ValueError):
            state = parse_state(record.value or b"")
            if isinstance(state, StatsState) and state.outcome == "pushed":
                acked[stats_state_key(state.ky, state.ma_don_vi)] = state.digest
    registry = UnitRegistry.load(settings.unit_registry) if settings.unit_registry else default_registry()
    items = history_items(partials, DomainStatsBuilder(registry, catalogue), now, start, end)
    fresh = [i for i in items if acked.get(stats_state_key(i.ky, i.ma_don_vi)) != stats_digest(i.body)]
    prod = producer(settings.kafka, "push-stats")
    try:
        for key, value, headers in outbox_records(fresh, settings.kafka.outbox_key()):
            prod.send(settings.topics.outbox, value, key=key, headers=headers)
        prod.flush(timeout=60)
    finally:
        prod.close()
    return len(fresh), len(items) - len(fresh)


def _read_all(settings: Settings, topic: str) -> list[Any] | None:
    """Every record of ``topic`` from the beginning to its current end; None when the topic does not exist."""
    return read_topic(settings.kafka, "push-stats", topic)


def outbox_records(
    items: list[OutboxStats], signing_key: bytes
) -> list[tuple[bytes, bytes, list[tuple[str, bytes]]]]:
    """(key ``stats|<ky>|<unit>``, value, signed headers) of each item: as the portal sync accepts them."""
    out = []
    for item in items:
        key = stats_state_key(item.ky, item.ma_don_vi).encode()
        value = item.model_dump_json().encode()
        out.append((key, value, sign(signing_key, key, value)))
    return out


def _stats(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    end = _next_month(args.to) if args.to is not None else None
    enqueued, skipped = enqueue_history(settings, args.start, end)
    print(f"statistics enqueued for the portal: {enqueued} (unit, period) bodies; "
          f"{skipped} skipped (the portal already holds them unchanged)")
    if enqueued:
        print("the portal sync (`dvc-hub push run`) pushes them once; `dvc-hub push status` shows the backlog")
    return 0


def register(subparsers: Any) -> None:
    """Add ``dvc-hub push ...``."""
    parser = subparsers.add_parser("push", help="push dossiers, progress and statistics to the provincial portal")
    sub = parser.add_subparsers(dest="push_command", metavar="ACTION", required=True)
    p = sub.add_parser("run", help="run the portal sync service (until Ctrl-C / SIGTERM)")
    p.set_defaults(func=_run)
    p = sub.add_parser("status", help="backlog per kind, oldest unpushed age, breaker state, last errors")
    p.set_defaults(func=_status)
    p = sub.add_parser(
        "stats", help="enqueue the statistics of older periods (history on demand) for the portal sync",
        description="Build the statistics body of every (unit, period) with figures whose period starts in "
        "--from .. --to (months, inclusive) from the partials and the catalogue, and enqueue those the portal "
        "does not hold yet; the portal sync pushes each once. Periods around now are kept current by the "
        "sync itself; this is for history (a backfill, or a province that asks for an old year).",
    )
    p.add_argument("--from", dest="start", type=_month, required=True, metavar="YYYY-MM",
                   help="first month (a quarter or year counts when it starts in the range)")
    p.add_argument("--to", type=_month, default=None, metavar="YYYY-MM", help="last month (default: no limit)")
    p.set_defaults(func=_stats)
