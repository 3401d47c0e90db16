"""``dvc-hub dlq``: list, show and replay dead letters.

Dead letters are read **by position**, never by rereading the topic: ``show N`` assigns the
dead-letter partition, seeks to offset N and reads that one record; ``list`` reads a window (the
newest ``--limit`` letters, or forward from ``--from-offset``), and with ``--stage``/``--reason``
walks back (or forward) window by window until it has ``--limit`` matches or has examined
``--scan`` letters, saying so when it stopped before the end. The dead-letter topic has one
partition (:func:`hub.kafka.hub_topics`); a topic made with more needs ``--partition``. An offset
that does not exist, or that retention already deleted, is said so, with a non-zero exit code.

A replay sends a dead letter's payload back to the topic it came from, **keeping its ids** (the
outbox item id, the raw record's event id), so everything downstream treats it like any re-delivery
and deduplicates it. Each replay is recorded in the audit topic (who: ``operator.name``, else the
OS user; when; which dead letter), and a dead letter already replayed is skipped unless
``--force``: replaying twice never makes an effective duplicate either way. A replay of given
offsets reads them by position; ``--all`` scans the topic (it selects by filter).

A replay of many (``--all``) or of already replayed ones (``--force``) asks for confirmation on a
terminal; without a terminal (a script, cron) it needs ``--yes`` and refuses otherwise.

Examples::

    dvc-hub dlq list                                   # the newest 50
    dvc-hub dlq list --stage portal_sync --reason portal_rejected --limit 20
    dvc-hub dlq list --from-offset 1200 --limit 100
    dvc-hub dlq show 42
    dvc-hub dlq replay 42
    dvc-hub dlq replay --all --reason portal_rejected        # asks: replay N dead letters? [y/N]
    dvc-hub dlq replay --all --reason portal_rejected --yes  # from a script
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from kafka import KafkaConsumer, TopicPartition

from hub.config import Settings, load_settings
from hub.deadletter import DeadLetter
from hub.kafka import consumer, producer
from hub.kafka import read_topic as read_all
from hub.sync.service import REPLAY_HEADER
from hub.sync.signing import sign
from schemas.figures import OutboxDossier, OutboxStats
from schemas.raw import RawRecord

__all__ = ["DeadLetterReader", "read_topic", "register", "replay_key"]

#: Letters read per window when ``list`` filters (one fetch, a few hundred kilobytes at most).
WINDOW = 500
#: How long a read may wait for the broker before giving up with a message (never hang).
READ_TIMEOUT_S = 30.0


def read_topic(settings: Settings, topic: str) -> list[Any]:
    """Every record of ``topic`` (all partitions) from the beginning to its current end.

    For small compacted topics (sync state, audit); the dead-letter topic is read by position
    (:class:`DeadLetterReader`).
    """
    records = read_all(settings.kafka, "dlq-cli", topic)
    if records is None:
        raise SystemExit(f"dvc-hub: topic {topic} does not exist (has the hub run? `dvc-hub up` creates it)")
    return records


class MissingLetterError(LookupError):
    """No dead letter at an offset; the message says why (past the end, deleted by retention)."""


@dataclass(frozen=True)
class Letter:
    """A dead letter and where it is in the dead-letter topic."""

    partition: int
    offset: int
    letter: DeadLetter | None  # None: the record there is not a dead letter the CLI can read


class DeadLetterReader:
    """The dead-letter topic read by position: one partition assigned, a seek, only what is asked.

    ``fetched`` counts the records the consumer handed over (the evidence that ``show`` reads one
    record and ``list`` a window, not the topic).
    """

    def __init__(self, settings: Settings, *, partition: int | None = None,
                 make_consumer: Callable[..., KafkaConsumer] | None = None) -> None:
        self.topic = settings.topics.dead_letter
        self.fetched = 0
        self._c = (make_consumer or consumer)(settings.kafka, "dlq-cli", group_id=None, max_poll_records=WINDOW)
        parts = sorted(self._c.partitions_for_topic(self.topic) or ())
        problem = None
        if not parts:
            problem = f"topic {self.topic} does not exist (has the hub run? `dvc-hub up` creates it)"
        elif partition is not None and partition not in parts:
            problem = f"{self.topic} has no partition {partition} (it has {len(parts)}: 0..{len(parts) - 1})"
        if problem is not None:
            self._c.close()
            raise SystemExit(f"dvc-hub: {problem}")
        self.partitions = [partition] if partition is not None else parts

    def close(self) -> None:
        """Close the consumer (no group: nothing is committed)."""
        self._c.close()

    def __enter__(self) -> DeadLetterReader:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def only_partition(self) -> int:
        """The partition to read when the operator named none: the only one, else an error."""
        if len(self.partitions) > 1:
            raise SystemExit(f"dvc-hub: {self.topic} has {len(self.partitions)} partitions: give --partition")
        return self.partitions[0]

    def bounds(self, partition: int) -> tuple[int, int]:
        """(first kept offset, end offset) of ``partition``: retention moves the first, writes the end."""
        tp = TopicPartition(self.topic, partition)
        return self._c.beginning_offsets([tp])[tp], self._c.end_offsets([tp])[tp]

    def read(self, partition: int, start: int, stop: int) -> list[Letter]:
        """The letters at offsets ``start`` (inclusive) to ``stop`` (exclusive), by seek, nothing else."""
        tp = TopicPartition(self.topic, partition)
        self._c.assign([tp])
        self._c.seek(tp, start)
        out: list[Letter] = []
        deadline = time.monotonic() + READ_TIMEOUT_S
        while self._c.position(tp) < stop:
            if time.monotonic() > deadline:
                raise SystemExit(f"dvc-hub: reading {self.topic} timed out at offset {self._c.position(tp)} "
                                 "(is the broker up? `dvc-hub status`)")
            want = stop - self._c.position(tp)
            for record in self._c.poll(timeout_ms=1000, max_records=min(want, WINDOW)).get(tp, []):
                self.fetched += 1
                if start <= record.offset < stop:
                    out.append(Letter(partition, record.offset, _parse(record.value)))
        return out

    def at(self, offset: int, partition: int) -> Letter:
        """The dead letter at ``offset``, or :class:`MissingLetterError` saying why there is none."""
        begin, end = self.bounds(partition)
        where = f"offset {offset}" + (f" of partition {partition}" if len(self.partitions) > 1 else "")
        if offset < begin:
            raise MissingLetterError(f"no dead letter at {where}: retention deleted it (the oldest kept is offset "
                                     f"{begin}; see `dvc-hub dlq list`)")
        if offset >= end:
            last = f"the last is offset {end - 1}" if end > begin else "the topic holds none"
            raise MissingLetterError(f"no dead letter at {where} ({last}; see `dvc-hub dlq list`)")
        found = [x for x in self.read(partition, offset, offset + 1) if x.offset == offset]
        if not found:
            raise MissingLetterError(f"no dead letter at {where} (no record there; see `dvc-hub dlq list`)")
        return found[0]


def _parse(value: bytes | None) -> DeadLetter | None:
    try:
        return DeadLetter.parse(value or b"")
    except ValueError:
        return None


def _letters(settings: Settings) -> list[tuple[int, DeadLetter]]:
    """Every dead letter (the whole topic): only ``replay --all``, which selects by filter."""
    out = []
    for record in read_topic(settings, settings.topics.dead_letter):
        letter = _parse(record.value)
        if letter is not None:
            out.append((record.offset, letter))
    return out


def _letters_at(settings: Settings, offsets: list[int], partition: int | None) -> list[tuple[int, DeadLetter]]:
    """The dead letters at ``offsets``, each read by position; a missing one is said and left out."""
    out = []
    with DeadLetterReader(settings, partition=partition) as reader:
        part = reader.only_partition()
        for offset in offsets:
            try:
                found = reader.at(offset, part)
            except MissingLetterError as exc:
                print(f"skip {offset}: {exc}")
                continue
            if found.letter is None:
                print(f"skip {offset}: the record there is not a readable dead letter")
                continue
            out.append((offset, found.letter))
    return out


def replay_key(payload: dict[str, Any], letter: DeadLetter) -> bytes:
    """The Kafka key the payload had on its origin topic (same key = same partition = same order)."""
    if letter.stage == "state":
        # A canonical event (streams.agents.dossier_state; its type is not an outbox's): keyed by
        # MaHoSo, a catalogue entry by unit code.
        code = payload.get("ma_ho_so") or payload.get("unit_code")
        if isinstance(code, str) and code:
            return code.encode()
    if payload.get("type") == "dossier":
        return OutboxDossier.model_validate(payload).ma_ho_so.encode()
    if payload.get("type") == "stats":
        item = OutboxStats.model_validate(payload)
        return f"stats|{item.ky}|{item.ma_don_vi}".encode()
    try:
        return RawRecord.model_validate(payload).key.encode()
    except ValueError:
        return letter.key()


def _matches(args: argparse.Namespace, found: Letter) -> bool:
    letter = found.letter
    if letter is None:
        return False
    return not ((args.stage and letter.stage != args.stage) or (args.reason and letter.reason != args.reason))


def _window(reader: DeadLetterReader, partition: int, args: argparse.Namespace) -> tuple[list[Letter], str | None]:
    """The letters ``list`` shows from one partition, and a note when it stopped before the end.

    Newest first by default: the last ``--limit`` offsets, or with a filter, windows walked back
    from the end until ``--limit`` match. ``--from-offset``: windows walked forward from there.
    Either way at most ``--scan`` letters are examined.
    """
    begin, end = reader.bounds(partition)
    filtered = bool(args.stage or args.reason)
    limit, scan = max(1, args.limit), max(1, args.scan)
    step = limit if not filtered else max(limit, WINDOW)
    hits: list[Letter] = []
    examined = 0
    note = None
    if args.from_offset is not None:
        pos = max(args.from_offset, begin)
        gone = f"offsets before {begin} were deleted by retention; " if args.from_offset < begin else ""
        note = f"{gone}listed from {begin}" if gone else None
        while pos < end and len(hits) < limit and examined < scan:
            stop = min(end, pos + min(step, scan - examined))
            batch = reader.read(partition, pos, stop)
            examined += stop - pos
            hits += [x for x in batch if _matches(args, x)]
            pos = stop
        hits = hits[:limit]
        if pos < end and len(hits) < limit:
            note = (f"{gone}examined {examined} letters (to offset {pos - 1}); newer ones not read: "
                    f"--from-offset {pos} or a larger --scan")
        return hits, note
    pos = end
    while pos > begin and len(hits) < limit and examined < scan:
        start = max(begin, pos - min(step, scan - examined))
        batch = reader.read(partition, start, pos)
        examined += pos - start
        hits = [x for x in batch if _matches(args, x)] + hits
        pos = start
    hits = hits[-limit:]
    if pos > begin and len(hits) < limit:
        note = (f"examined the newest {examined} letters (from offset {pos}); older ones not read: "
                f"--from-offset {begin} or a larger --scan")
    return hits, note


def _list(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    with DeadLetterReader(settings, partition=args.partition) as reader:
        several = len(reader.partitions) > 1
        shown: list[Letter] = []
        notes: list[str] = []
        for partition in reader.partitions:
            hits, note = _window(reader, partition, args)
            shown += hits
            if note:
                notes.append(f"partition {partition}: {note}" if several else note)
    if several:  # the newest --limit over all partitions, oldest first
        shown = sorted(shown, key=lambda x: x.letter.at if x.letter else datetime.min.replace(tzinfo=UTC))
        shown = shown[-max(1, args.limit):]
    for found in shown:
        letter = found.letter
        assert letter is not None  # _matches kept only readable letters
        where = f"{found.partition}:{found.offset}" if several else str(found.offset)
        print(f"{where:>8}  {letter.at:%Y-%m-%d %H:%M:%S}  {letter.stage:<12} {letter.reason:<16} "
              f"{letter.event_id or '-':<40} {letter.detail[:80]}")
    if not shown:
        print("no dead letters match")
    for note in notes:
        print(f"dvc-hub: {note}", file=sys.stderr)
    return 0


def _show(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    with DeadLetterReader(settings, partition=args.partition) as reader:
        try:
            found = reader.at(args.offset, reader.only_partition())
        except MissingLetterError as exc:
            print(f"dvc-hub: {exc}")
            return 1
    if found.letter is None:
        print(f"dvc-hub: the record at offset {args.offset} is not a readable dead letter")
        return 1
    print(json.dumps(found.letter.model_dump(mode="json"), ensure_ascii=False, indent=2))
    return 0


def _replayed_offsets(settings: Settings) -> set[int]:
    done = set()
    for record in read_topic(settings, settings.topics.audit):
        try:
            entry = json.loads(record.value)
        except (TypeError, ValueError):
            continue
        if isinstance(entry, dict) and entry.get("action") == "dlq.replay":
            done.add(int(entry["dead_letter_offset"]))
    return done


def replay(settings: Settings, offsets: list[int] | None, reason: str | None, force: bool,
           partition: int | None = None) -> tuple[int, int]:
    """Replay the selected dead letters (``offsets`` None = all, a scan); returns (replayed, skipped).

    Given offsets are read by position (:class:`DeadLetterReader`); one that is not there is
    reported and skipped.
    """
    if offsets is None:
        letters = [(o, d) for o, d in _letters(settings) if reason is None or d.reason == reason]
        missing = 0
    else:
        found = _letters_at(settings, offsets, partition)
        missing = len(offsets) - len(found)
        letters = [(o, d) for o, d in found if reason is None or d.reason == reason]
    already = set() if force else _replayed_offsets(settings)
    prod = producer(settings.kafka, "dlq-replay")
    replayed, skipped = 0, missing
    who = settings.operator.audit_fields()
    try:
        for offset, letter in letters:
            if offset in already:
                print(f"skip {offset}: already replayed (see the audit topic); --force replays again")
                skipped += 1
                continue
            if letter.payload is None or not letter.topic:
                print(f"skip {offset}: no payload or origin topic to replay (only an excerpt was kept)")
                skipped += 1
                continue
            value = json.dumps(letter.payload, ensure_ascii=False).encode()
            key = replay_key(letter.payload, letter)
            headers = [(REPLAY_HEADER, str(offset).encode())]
            if letter.topic == settings.topics.outbox:  # the portal sync pushes only signed items
                headers += sign(settings.kafka.outbox_key(), key, value)
            # A canonical event goes back to the partition it was read from: a catalogue entry is one
            # partition's copy (the normaliser broadcasts it), a dossier's events share its partition.
            where = {"partition": letter.partition} if letter.stage == "state" and letter.partition is not None else {}
            prod.send(letter.topic, value=value, key=key, headers=headers, **where).get(timeout=30)
            audit = {"action": "dlq.replay", **who, "at": datetime.now(UTC).isoformat(),
                     "dead_letter_offset": offset, "event_id": letter.event_id, "topic": letter.topic,
                     "stage": letter.stage, "reason": letter.reason}
            prod.send(settings.topics.audit, value=json.dumps(audit).encode(),
                      key=f"dlq-replay:{offset}".encode()).get(timeout=30)
            print(f"replayed {offset} ({letter.event_id}) to {letter.topic}")
            replayed += 1
    finally:
        prod.flush()
        prod.close()
    return replayed, skipped


def confirm(question: str, *, yes: bool) -> bool:
    """True to go ahead: ``--yes``, or "y" typed on a terminal. Never asks a pipe: refuses instead."""
    if yes:
        return True
    if not sys.stdin.isatty():
        print(f"dvc-hub: {question}: refused without a terminal to confirm on; add --yes to go ahead",
              file=sys.stderr)
        return False
    print(f"{question} [y/N] ", end="", flush=True)
    answer = sys.stdin.readline().strip().lower()
    if answer in {"y", "yes"}:
        return True
    print("nothing replayed")
    return False


def _replay(args: argparse.Namespace) -> int:
    if args.offset is None and not args.all:
        print("dvc-hub: give a dead letter OFFSET or --all (with --reason to narrow it)")
        return 2
    settings = load_settings(args.config)
    if args.all or args.force:
        # Many records at once, or ones already replayed: a typo here re-sends a backlog.
        what = "every dead letter" if args.all else f"dead letter {args.offset}"
        if args.reason:
            what += f" with reason {args.reason}"
        if args.force:
            what += ", including those already replayed (--force)"
        who = settings.operator.identity()
        if not confirm(f"replay {what} to their origin topics, as {who}?", yes=args.yes):
            return 2
    # --partition only when given: the one-partition call stays replay(settings, offsets, reason, force).
    where = {"partition": args.partition} if args.partition is not None else {}
    replayed, skipped = replay(settings, None if args.all else [args.offset], args.reason, args.force, **where)
    print(f"{replayed} replayed, {skipped} skipped")
    return 0


def register(subparsers: Any) -> None:
    """Add ``dvc-hub dlq ...``."""
    parser = subparsers.add_parser("dlq", help="list, show and replay dead letters")
    sub = parser.add_subparsers(dest="dlq_command", metavar="ACTION", required=True)
    p = sub.add_parser("list", help="list dead letters (the newest --limit, oldest first; read by offset)")
    p.add_argument("--stage", help="only this stage (connector, normalize, state, portal_sync, replay)")
    p.add_argument("--reason", help="only this reason (e.g. portal_rejected, schema)")
    p.add_argument("--limit", type=int, default=50, help="at most this many (default 50)")
    p.add_argument("--from-offset", type=int, metavar="N",
                   help="list forward from offset N (default: the newest letters)")
    p.add_argument("--scan", type=int, default=10_000, metavar="M",
                   help="examine at most M letters to find --limit matches of --stage/--reason (default 10000)")
    p.add_argument("--partition", type=int, help="only this partition of the dead-letter topic (it has one)")
    p.set_defaults(func=_list)
    p = sub.add_parser("show", help="show one dead letter as JSON (read by its offset)")
    p.add_argument("offset", type=int, help="its offset in the dead-letter topic (from `dlq list`)")
    p.add_argument("--partition", type=int, help="its partition, if the dead-letter topic has several")
    p.set_defaults(func=_show)
    p = sub.add_parser("replay", help="send dead letters back to their origin topic, ids kept, audited")
    p.add_argument("offset", type=int, nargs="?", help="the dead letter's offset")
    p.add_argument("--partition", type=int, help="its partition, if the dead-letter topic has several")
    p.add_argument("--all", action="store_true", help="every dead letter (narrow with --reason)")
    p.add_argument("--reason", help="only dead letters with this reason")
    p.add_argument("--force", action="store_true", help="replay even if the audit topic shows it was replayed")
    p.add_argument("--yes", action="store_true", help="do not ask for confirmation (--all/--force); needed "
                   "when stdin is not a terminal")
    p.set_defaults(func=_replay)
