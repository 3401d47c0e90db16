"""The sync engine: runs one connector instance's poll cycles, safely.

For each page a stream yields, :class:`SyncEngine`:

1. turns records into :class:`~schemas.raw.RawRecord` envelopes at the privacy edge (:mod:`.edge`);
2. drops those whose ``event_id`` this process already delivered (a bounded seen-set, so look-back
   re-reads cost nothing; after a restart the set is empty and re-reads become duplicates with
   *identical* event ids, which downstream absorbs);
3. delivers the rest and the page's dead letters and **waits for Kafka's acknowledgement**;
4. only then saves the page's checkpoint as the stream's cursor in the state topic.

A page the stream cannot parse even after ``bad_page_attempts`` fetches (whatever the parser
raised: invalid JSON or XML, but also ``RecursionError``, ``KeyError``, ``TypeError``,
``UnicodeDecodeError``...; see :func:`connectors.sdk.errors.page_error`; only cancellation and the
SDK's own connection errors pass through) is dead-lettered once and the stream **holds** its
cursor: the next cycle tries the same position again. Skipping an unparseable page could lose
every record on it, and nothing proves it held nothing we need; holding loses nothing,
shows in ``/healthz`` and the error metric, and an operator who has looked at the dead letter can move
past it with ``dvc-hub connectors reset NAME --to CURSOR``. A single bad *record* never holds anything:
it is dead-lettered and the page goes on.

**Each refusal is dead-lettered once.** Look-back windows, re-read seconds and repeated passes read
a refused record again and again; each refusal (a refused record, a parser's reject, a held page)
has a deterministic id (:meth:`connectors.sdk.edge.Edge.refusal_id`, a keyed hash of its content or
of the held position), and the ids already dead-lettered are remembered in a bounded set that is
saved **in the instance's state record**, with the cursor, after the dead letters were
acknowledged. That is enough across restarts: a restarted connector loads the ids with its cursor,
and it only re-reads what lies within its look-back of that cursor — refusals made within that
window are among the most recent ids, which the bound (``refused_capacity``, 1,000 by default) keeps.
The one gap is a crash between the dead letter's acknowledgement and the state save: that refusal
is dead-lettered a second time, with the same id (``dlq.event_id``), as records are re-delivered.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from prometheus_client import CollectorRegistry

from connectors.sdk.base import Connector, Cursor, Stream
from connectors.sdk.edge import Edge
from connectors.sdk.errors import BadPage, ConnectorError, page_error
from connectors.sdk.sinks import RecordSink
from connectors.sdk.state import ConnectorState, StateStore
from hub import metrics as m
from hub.config import TopicSettings
from hub.deadletter import DeadLetter
from hub.privacy import redact_text

__all__ = ["ConnectorMetrics", "CycleReport", "SeenSet", "SyncEngine"]

log = logging.getLogger(__name__)

MAX_FAILURE_BACKOFF_S = 300.0
#: How soon a snapshot stream (a catalogue) that came back empty is read again.
EMPTY_SNAPSHOT_RETRY_S = 30.0


class SeenSet:
    """A bounded set of event ids, least recently seen evicted first."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._items: OrderedDict[str, None] = OrderedDict()

    def __contains__(self, item: object) -> bool:
        return item in self._items

    def __len__(self) -> int:
        return len(self._items)

    def items(self) -> list[str]:
        """The ids held, oldest first."""
        return list(self._items)

    def update(self, items: Iterable[str]) -> None:
        """Remember ``items``."""
        for item in items:
            self._items[item] = None
            self._items.move_to_end(item)
        while len(self._items) > self.capacity:
            self._items.popitem(last=False)


class ConnectorMetrics:
    """The connector metrics of the catalogue (:mod:`hub.metrics`), in one registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.polls = m.counter(m.CONNECTOR_POLLS, registry)
        self.records = m.counter(m.CONNECTOR_RECORDS, registry)
        self.errors = m.counter(m.CONNECTOR_ERRORS, registry)
        self.cursor_age = m.gauge(m.CONNECTOR_CURSOR_AGE, registry)
        self.last_success = m.gauge(m.CONNECTOR_LAST_SUCCESS, registry)
        self.up = m.gauge(m.CONNECTOR_UP, registry)
        self.dead_letters = m.dead_letter_counter("connector", registry)

    def count_retry(self, connector: str, type_: str, reason: str) -> None:
        """A retried request (``on_retry`` of the HTTP client): errors_total by reason."""
        self.errors.labels(connector, type_, reason).inc()


@dataclass
class CycleReport:
    """What one poll cycle did."""

    produced: int = 0
    duplicates_skipped: int = 0
    dead_letters: int = 0
    pages: int = 0
    #: Refusals (records, rejects, held pages) met again and not dead-lettered a second time.
    refusals_repeated: int = 0
    errors: dict[str, str] = field(default_factory=dict)  # stream -> stable key
    held: dict[str, str] = field(default_factory=dict)  # stream -> dead-letter reason

    @property
    def ok(self) -> bool:
        """No stream failed (a held stream counts as a failure of the cycle)."""
        return not self.errors and not self.held


class SyncEngine:
    """Runs one connector instance (see the module docstring)."""

    def __init__(
        self,
        connector: Connector,
        *,
        sink: RecordSink,
        state_store: StateStore,
        topics: TopicSettings,
        privacy_key: bytes,
        share_free_text: bool = False,
        metrics: ConnectorMetrics | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.connector = connector
        self.name = connector.instance.name
        self.sink = sink
        self.store = state_store
        self.topics = topics
        self.metrics = metrics
        self.edge = Edge(source=connector.source, instance=self.name, privacy_key=privacy_key,
                         max_depth=connector.config.max_depth, share_free_text=share_free_text)
        self.seen = SeenSet(connector.config.seen_capacity)
        #: Ids of refusals already dead-lettered (saved in the state; see the module docstring).
        self.refused = SeenSet(connector.config.refused_capacity)
        self._refused_dirty = False
        self.state = ConnectorState(instance=self.name, type=connector.type)
        self._monotonic = monotonic
        self._sleep = sleep
        self._last_read: dict[str, float] = {}
        #: Streams to read whole and deliver whole on their next cycle (:meth:`request_resend`).
        self._resend: set[str] = set()
        self._loaded = False
        self.consecutive_failures = 0
        self.last_error: dict[str, str] | None = None
        self.records_total = 0
        self.caught_up = False
        self.dead_letters_total = 0
        #: Called right before every state save; tests use it to simulate a crash at the worst moment.
        self.before_save: Callable[[ConnectorState], None] | None = None
        if metrics is not None:
            metrics.up.labels(self.name, connector.type).set(0)

    # ------------------------------------------------------------------ state
    async def load_state(self, known: ConnectorState | None = None) -> None:
        """Load the saved state (or take ``known``, read once for every instance by the runner)."""
        state = known if known is not None else await self.store.load(self.name)
        if state is not None:
            self.state = state.model_copy(deep=True)
            self.refused.update(self.state.refused)
        self._loaded = True

    async def _save(self) -> None:
        self.state.refused = self.refused.items()
        self._refused_dirty = False
        self.state.updated_at = datetime.now(UTC)
        self.state.written_by = "runner"
        if self.before_save is not None:
            self.before_save(self.state)
        await self.store.save(self.state)

    # ------------------------------------------------------------------ re-send on request
    def request_resend(self, kind: str) -> list[str]:
        """Deliver every record of the streams of ``kind`` (``"catalogue"``) again on the next cycle.

        A worker whose catalogue is empty asks for it (:mod:`hub.requests`); the rows were all
        delivered before, so the seen-set would drop every one of them as a duplicate, and a
        snapshot stream is not due before its refresh interval (an hour). So the stream is made
        due now, read from its start (an incremental stream ignores its cursor for that cycle and
        saves none, so the saved cursor never moves back), and its records are delivered whether seen or not. The
        worker absorbs rows it has already. Returns the names of the streams concerned.
        """
        names = [stream.name for stream in self.connector.stream_objects if stream.kind == kind]
        for name in names:
            self._resend.add(name)
            self._last_read.pop(name, None)
        return names

    # ------------------------------------------------------------------ cycles
    def _due(self, stream: Stream) -> bool:
        interval = stream.refresh_every()
        last = self._last_read.get(stream.name)
        return interval is None or last is None or self._monotonic() - last >= interval

    def _labels(self) -> tuple[str, str]:
        return (self.name, self.connector.type)

    def _count_error(self, reason: str) -> None:
        if self.metrics is not None:
            self.metrics.errors.labels(*self._labels(), reason).inc()

    async def run_once(self) -> CycleReport:
        """One poll cycle over every due stream. ConnectorErrors are reported, not raised."""
        if not self._loaded:
            await self.load_state()
        report = CycleReport()
        proof = True
        for stream in self.connector.stream_objects:
            if not self._due(stream):
                continue
            try:
                resend = stream.name in self._resend
                empty = await self._sync_stream(stream, report)
                if resend:
                    self._resend.discard(stream.name)
                    log.info("connector %s: re-sent stream %s on request", self.name, stream.name)
                self._last_read[stream.name] = self._monotonic()
                interval = stream.refresh_every()
                if empty and interval is not None and interval > EMPTY_SNAPSHOT_RETRY_S:
                    # A catalogue that came back empty (the source was still being set up, or in
                    # maintenance) is read again soon, not a refresh interval (an hour) later:
                    # figures that depend on it (fees, paper results) would be wrong until then.
                    self._last_read[stream.name] -= interval - EMPTY_SNAPSHOT_RETRY_S
                await self._complete_cycle(stream)
                proof = proof and stream.proves_caught_up()
            except BadPage as exc:
                await self._hold(stream, exc, report)
            except ConnectorError as exc:
                report.errors[stream.name] = exc.key
                self.last_error = {"key": exc.key, "stream": stream.name, "message": redact_text(str(exc))}
                self._count_error(getattr(exc, "reason", exc.key))
                log.warning("connector %s stream %s: %s", self.name, stream.name, redact_text(str(exc)))
        await self._finish_cycle(report)
        # Caught up: a clean cycle that read every stream to its end (look-back included) and found
        # nothing new. A cheaper cycle that proves less leaves the previous verdict only if it found
        # nothing either.
        nothing_new = report.ok and report.produced == 0 and report.dead_letters == 0
        self.caught_up = nothing_new and (proof or self.caught_up)
        return report

    async def _finish_cycle(self, report: CycleReport) -> None:
        now = datetime.now(UTC)
        labels = self._labels()
        if report.ok:
            self.consecutive_failures = 0
            self.last_error = None
            previous = self.state.last_success
            self.state.last_success = now
            # Keep "last success" fresh in the state topic without writing it every 5 seconds.
            if previous is None or (now - previous).total_seconds() > 60:
                await self._save()
        else:
            self.consecutive_failures += 1
        if self.metrics is not None:
            self.metrics.polls.labels(*labels, "ok" if report.ok else "error").inc()
            self.metrics.up.labels(*labels).set(1 if report.ok else 0)
            if report.ok:
                self.metrics.last_success.labels(*labels).set(now.timestamp())
            age = await self.cursor_age()
            if age is not None:
                self.metrics.cursor_age.labels(*labels).set(age)

    async def cursor_age(self) -> float | None:
        """Source time minus the first incremental stream's cursor time, in seconds."""
        for stream in self.connector.stream_objects:
            if not stream.incremental:
                continue
            at = stream.cursor_time(self.state.cursors.get(stream.name))
            if at is None:
                return None
            now = await self.connector.source_now() or datetime.now(UTC)
            return max(0.0, (now - at).total_seconds())
        return None

    async def _sync_stream(self, stream: Stream, report: CycleReport) -> bool:
        """Read ``stream`` to its end; True when a page of a snapshot stream (one unit's catalogue) was empty."""
        resend = stream.name in self._resend  # deliver everything, from the start (request_resend)
        saved: Cursor | None = self.state.cursors.get(stream.name) if stream.incremental and not resend else None
        topic = getattr(self.topics, stream.topic)
        empty = False
        pages = aiter(stream.pages(saved))
        while True:
            try:
                page = await anext(pages)
            except StopAsyncIteration:
                break
            except ConnectorError:
                raise
            except Exception as exc:  # noqa: BLE001 - every page failure is a bad page, by design
                # Anything a stream raises while reading or parsing (a bug, a body it did not expect)
                # is the documented bad page: dead-lettered once, the stream held, /healthz degraded.
                raise page_error(exc, where=f"a page of {stream.name}") from None
            report.pages += 1
            empty = empty or (not stream.incremental and not page.records and not page.rejects)
            raws, letters = self.edge.process(stream, page.records)
            letters.extend(self.edge.reject(stream, r) for r in page.rejects)
            letters = self._first_time(letters, report)
            fresh = []
            batch_ids: set[str] = set()
            for raw in raws:
                if raw.event_id in batch_ids or (raw.event_id in self.seen and not resend):
                    report.duplicates_skipped += 1
                    continue
                batch_ids.add(raw.event_id)
                fresh.append(raw)
            # Records first, then their dead letters; both acknowledged before the cursor moves.
            await self.sink.deliver(topic, fresh)
            await self.sink.dead_letters(self.topics.dead_letter, letters)
            self._remember(letters)
            self.seen.update(batch_ids)
            report.produced += len(fresh)
            report.dead_letters += len(letters)
            self.records_total += len(fresh)
            self.dead_letters_total += len(letters)
            if self.metrics is not None:
                self.metrics.records.labels(*self._labels()).inc(len(fresh))
                for letter in letters:
                    self._count_error(f"dead_letter_{letter.reason}")
                    self.metrics.dead_letters.labels("connector", letter.reason).inc()
            if page.checkpoint is not None and stream.incremental and not resend:
                current = self.state.cursors.get(stream.name)
                new = stream.merge_cursor(current, page.checkpoint)
                if new != current:
                    self.state.cursors[stream.name] = new
                    await self._save()
        if self._refused_dirty:
            await self._save()
        return empty

    def _first_time(self, letters: list[DeadLetter], report: CycleReport) -> list[DeadLetter]:
        """The letters whose refusal was not dead-lettered before (nor twice in this batch)."""
        fresh: list[DeadLetter] = []
        ids: set[str] = set()
        for letter in letters:
            ident = letter.event_id
            if ident is not None and (ident in self.refused or ident in ids):
                report.refusals_repeated += 1
                continue
            if ident is not None:
                ids.add(ident)
            fresh.append(letter)
        return fresh

    def _remember(self, letters: list[DeadLetter]) -> None:
        ids = [letter.event_id for letter in letters if letter.event_id is not None]
        if ids:
            self.refused.update(ids)
            self._refused_dirty = True

    async def _complete_cycle(self, stream: Stream) -> None:
        if not stream.incremental:
            return
        current = self.state.cursors.get(stream.name)
        done = stream.cycle_done(current)
        if done is not None and done != current:
            self.state.cursors[stream.name] = done
            await self._save()

    async def _hold(self, stream: Stream, exc: BadPage, report: CycleReport) -> None:
        report.held[stream.name] = exc.reason
        cursor = self.state.cursors.get(stream.name)
        where = json.dumps(cursor, sort_keys=True, ensure_ascii=False)
        self.last_error = {
            "key": "bad_page", "stream": stream.name,
            "message": redact_text(f"{exc.detail}; holding at cursor {where}. Look at the dead letter, fix the "
                                   f"source, or move past it: dvc-hub connectors reset {self.name} --to CURSOR"),
        }
        self._count_error(f"bad_page_{exc.reason}")
        # One dead letter per held position, whatever the page raised this time (and after a
        # restart: the id is saved with the state).
        ident = self.edge.refusal_id(stream, ["hold", where])
        if ident in self.refused:
            report.refusals_repeated += 1
            return  # already dead-lettered at this position; do not flood the topic every cycle
        letter = self.edge.letter(exc.reason, f"{stream.name}: page refused {self.connector.config.bad_page_attempts} "
                                  f"time(s) at cursor {where}: {exc.detail}", stream=stream, raw=exc.raw,
                                  event_id=ident, codes={f"cursor.{k}": v for k, v in (cursor or {}).items()})
        await self.sink.dead_letters(self.topics.dead_letter, [letter])
        if self.metrics is not None:
            self.metrics.dead_letters.labels("connector", letter.reason).inc()
        self._remember([letter])
        await self._save()
        report.dead_letters += 1
        self.dead_letters_total += 1
        log.warning("connector %s stream %s holds at %s: %s", self.name, stream.name, where, exc.reason)

    # ------------------------------------------------------------------ loop
    async def run(self, stop: asyncio.Event) -> None:
        """Poll until ``stop`` is set; failures back off up to five minutes, nothing crashes the loop."""
        interval = self.connector.instance.poll_interval_s
        while not stop.is_set():
            try:
                await self.run_once()
            except ConnectorError as exc:  # delivery or state errors outside a stream
                self.consecutive_failures += 1
                self.last_error = {"key": exc.key, "stream": "", "message": redact_text(str(exc))}
                self._count_error(type(exc).__name__)
                log.warning("connector %s: %s", self.name, redact_text(str(exc)))
            except Exception as exc:  # a bug in one connector must not stop the others
                self.consecutive_failures += 1
                self.last_error = {"key": "unknown", "stream": "", "message": type(exc).__name__}
                self._count_error("unexpected")
                log.exception("connector %s: unexpected %s; retrying after backoff", self.name,
                              type(exc).__name__)
            wait = interval
            if self.consecutive_failures:
                wait = min(MAX_FAILURE_BACKOFF_S, interval * 2 ** min(self.consecutive_failures - 1, 10))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=wait)

    def health(self) -> dict[str, Any]:
        """This instance's health as JSON (``/healthz``)."""
        if not self._loaded:
            status = "starting"
        elif self.last_error is None:
            status = "ok" if self.state.last_success else "starting"
        elif self.last_error["key"] == "bad_page":
            status = "degraded"
        else:
            status = "error"
        return {
            "instance": self.name,
            "type": self.connector.type,
            "status": status,
            "last_success": self.state.last_success.isoformat() if self.state.last_success else None,
            "consecutive_failures": self.consecutive_failures,
            "last_error": self.last_error,
            "cursors": self.state.cursors,
            "records_total": self.records_total,
            "dead_letters_total": self.dead_letters_total,
            "caught_up": self.caught_up,
        }
