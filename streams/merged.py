"""City-wide (merged) figures on every worker: a background reader of the compacted partials topic.

Decision 766 rates and scores and the catalogue gauges (``dvchub_kpi766_rate_ratio``,
``dvchub_kpi766_score``, ``dvchub_procedures_offered``, ``dvchub_procedures_without_dossier``) are
not sums: a worker that holds some partitions cannot compute its share of a ratio. So every worker
reads the partials topic (each key ``<partition>|<unit>`` holds the complete counts of one unit in
one partition, whichever worker owns it), keeps the latest record per key, and at scrape time adds
them up (:func:`schemas.figures.merge_counts`) and computes the gauges with
:func:`streams.domain.report.merged_samples` and its own catalogue (every worker holds the whole
catalogue). Every worker therefore exposes the *same* copy, and the recording rules take
``max by (unit, ...)`` across instances.

The reader is a kafka-python consumer without a group, assigned every partition of the topic from
the beginning, polling in a daemon thread. Until it has read up to the end offsets it saw at start,
:meth:`PartialsReader.merged` returns ``None`` and the worker exposes none of these gauges (a
half-read topic would show wrong ratios).

Example::

    reader = PartialsReader(settings)
    reader.start()
    ...
    counts = reader.merged()      # unit code -> Counter of count keys, or None while catching up
    reader.stop()
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Container, Iterable
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from hub.config import Settings
from schemas.calendar import TZ
from schemas.figures import UnitFigures, merge_counts, split_key
from streams.domain.periods import period_kind, periods_of_date

log = logging.getLogger(__name__)

#: How many of the latest periods of each kind found in the counts get merged gauges (besides now's
#: month, quarter and year): enough for the dashboards' period picker, bounded in series.
RECENT_PERIODS = {"month": 3, "quarter": 2, "year": 2}
POLL_TIMEOUT_MS = 500
RETRY_S = 2.0


class PartialsReader:
    """Latest :class:`UnitFigures` of every key of the partials topic, kept current by a thread."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.topic = settings.topics.partials
        self._latest: dict[bytes, UnitFigures] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._caught_up = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def caught_up(self) -> bool:
        """True once the topic has been read up to the end offsets seen at start."""
        return self._caught_up.is_set()

    def start(self) -> None:
        """Start the reading thread (idempotent)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="partials-reader", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the thread and close its consumer."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def merged(self) -> dict[str, Counter[str]] | None:
        """Unit code -> counts summed over the latest partial of every partition; None while catching up."""
        if not self._caught_up.is_set():
            return None
        with self._lock:
            partials = list(self._latest.values())
        return merge_counts(partials)

    def apply(self, key: bytes | None, value: bytes | None) -> None:
        """Take one record of the topic: the latest value of a key wins; a tombstone removes it."""
        if key is None:
            return
        if value is None:
            with self._lock:
                self._latest.pop(key, None)
            return
        try:
            fig = UnitFigures.model_validate_json(value)
        except ValidationError:
            log.warning("ignoring a partials record that is not UnitFigures (key %r)", key[:40])
            return
        with self._lock:
            self._latest[key] = fig

    # ------------------------------------------------------------------ thread
    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._read()
            except Exception as exc:  # noqa: BLE001 — the broker may be away: keep the last figures, retry
                log.warning("partials reader: %s; retrying in %.0fs", exc, RETRY_S)
                self._stop.wait(RETRY_S)

    def _read(self) -> None:
        from kafka import TopicPartition

        from hub.kafka import consumer

        cons = consumer(self.settings.kafka, "worker-partials", group_id=None)
        try:
            parts = cons.partitions_for_topic(self.topic)
            while not parts and not self._stop.is_set():
                self._stop.wait(RETRY_S)
                parts = cons.partitions_for_topic(self.topic)
            if not parts:
                return
            tps = [TopicPartition(self.topic, p) for p in sorted(parts)]
            cons.assign(tps)
            cons.seek_to_beginning(*tps)
            ends = cons.end_offsets(tps)
            while not self._stop.is_set():
                for records in cons.poll(timeout_ms=POLL_TIMEOUT_MS).values():
                    for rec in records:
                        self.apply(rec.key, rec.value)
                if not self._caught_up.is_set() and all(cons.position(tp) >= ends[tp] for tp in tps):
                    self._caught_up.set()
        finally:
            cons.close()


def gauge_periods(merged: dict[str, Counter[str]], now: datetime, window: Container[str] | None = None) -> list[str]:
    """Periods that get merged gauges: now's month, quarter and year, and the latest periods that received dossiers.

    Only periods in ``window`` (``HubRuntime.metric_window``) are candidates: a dossier dated ahead
    of today must not take the place of the latest real periods.
    """
    found: dict[str, set[str]] = {"month": set(), "quarter": set(), "year": set()}
    for counts in merged.values():
        for key, n in counts.items():
            # Periods with dossiers received: open_end keys run on to now for every open dossier.
            if n and key.startswith("received|"):
                per = split_key(key)[3]
                if window is None or per in window:
                    found[period_kind(per)].add(per)
    out = set(periods_of_date(now.astimezone(TZ).date()))
    for kind, pers in found.items():
        out.update(sorted(pers)[-RECENT_PERIODS[kind]:])
    return sorted(out)


def merged_gauges(rt: Any, now: datetime, window: Container[str] | None = None) -> Iterable[Any]:
    """The merged samples (``(spec, labels, value)``) of ``rt``'s reader, or nothing while it catches up."""
    from streams.domain.report import merged_samples

    reader: PartialsReader | None = getattr(rt, "partials_reader", None)
    merged = reader.merged() if reader is not None else None
    if merged is None:
        return []
    return list(merged_samples(merged, rt.catalogue, rt.units, now, rt.settings.kpi,
                               periods=gauge_periods(merged, now, window)))
