"""``dvc-hub dlq``: list, show and replay dead letters.

A replay sends a dead letter's payload back to the topic it came from, **keeping its ids** (the
outbox item id, the raw record's event id), so everything downstream treats it like any re-delivery
and deduplicates it. Each replay is recorded in the audit topic (who: ``operator.name``, else the
OS user; when; which dead letter), and a dead letter already replayed is skipped unless
``--force``: replaying twice never makes an effective duplicate either way.

A replay of many (``--all``) or of already replayed ones (``--force``) asks for confirmation on a
terminal; without a terminal (a script, cron) it needs ``--yes`` and refuses otherwise.

Examples::

    dvc-hub dlq list --stage portal_sync --reason portal_rejected --limit 20
    dvc-hub dlq show 42
    dvc-hub dlq replay 42
    dvc-hub dlq replay --all --reason portal_rejected        # asks: replay N dead letters? [y/N]
    dvc-hub dlq replay --all --reason portal_rejected --yes  # from a script
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from typing import Any

from kafka import TopicPartition

from hub.config import Settings, load_settings
from hub.deadletter import DeadLetter
from hub.kafka import consumer, producer
from hub.sync.service import REPLAY_HEADER
from hub.sync.signing import sign
from schemas.figures import OutboxDossier, OutboxStats
from schemas.raw import RawRecord

__all__ = ["read_topic", "register", "replay_key"]


def read_topic(settings: Settings, topic: str) -> list[Any]:
    """Every record of ``topic`` (all partitions) from the beginning to its current end."""
    c = consumer(settings.kafka, "dlq-cli", group_id=None)
    try:
        parts = [TopicPartition(topic, p) for p in sorted(c.partitions_for_topic(topic) or ())]
        if not parts:
            raise SystemExit(f"dvc-hub: topic {topic} does not exist (has the hub run? `dvc-hub up` creates it)")
        c.assign(parts)
        c.seek_to_beginning(*parts)
        end = c.end_offsets(parts)
        out: list[Any] = []
        while any(c.position(tp) < end[tp] for tp in parts):
            for records in c.poll(timeout_ms=1000).values():
                out.extend(records)
        return sorted(out, key=lambda r: (r.partition, r.offset))
    finally:
        c.close()


def _letters(settings: Settings) -> list[tuple[int, DeadLetter]]:
    out = []
    for record in read_topic(settings, settings.topics.dead_letter):
        try:
            out.append((record.offset, DeadLetter.parse(record.value)))
        except ValueError:
            continue
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


def _list(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    shown = 0
    for offset, letter in _letters(settings):
        if (args.stage and letter.stage != args.stage) or (args.reason and letter.reason != args.reason):
            continue
        print(f"{offset:>8}  {letter.at:%Y-%m-%d %H:%M:%S}  {letter.stage:<12} {letter.reason:<16} "
              f"{letter.event_id or '-':<40} {letter.detail[:80]}")
        shown += 1
        if shown >= args.limit:
            break
    if shown == 0:
        print("no dead letters match")
    return 0


def _show(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    for offset, letter in _letters(settings):
        if offset == args.offset:
            print(json.dumps(letter.model_dump(mode="json"), ensure_ascii=False, indent=2))
            return 0
    print(f"dvc-hub: no dead letter at offset {args.offset} (see `dvc-hub dlq list`)")
    return 1


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


def replay(settings: Settings, offsets: list[int] | None, reason: str | None, force: bool) -> tuple[int, int]:
    """Replay the selected dead letters (``offsets`` None = all); returns (replayed, skipped)."""
    letters = [(o, d) for o, d in _letters(settings)
               if (offsets is None or o in offsets) and (reason is None or d.reason == reason)]
    already = set() if force else _replayed_offsets(settings)
    prod = producer(settings.kafka, "dlq-replay")
    replayed = skipped = 0
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
    replayed, skipped = replay(settings, None if args.all else [args.offset], args.reason, args.force)
    print(f"{replayed} replayed, {skipped} skipped")
    return 0


def register(subparsers: Any) -> None:
    """Add ``dvc-hub dlq ...``."""
    parser = subparsers.add_parser("dlq", help="list, show and replay dead letters")
    sub = parser.add_subparsers(dest="dlq_command", metavar="ACTION", required=True)
    p = sub.add_parser("list", help="list dead letters (oldest first)")
    p.add_argument("--stage", help="only this stage (connector, normalize, state, portal_sync, replay)")
    p.add_argument("--reason", help="only this reason (e.g. portal_rejected, schema)")
    p.add_argument("--limit", type=int, default=50, help="at most this many (default 50)")
    p.set_defaults(func=_list)
    p = sub.add_parser("show", help="show one dead letter as JSON")
    p.add_argument("offset", type=int, help="its offset in the dead-letter topic (from `dlq list`)")
    p.set_defaults(func=_show)
    p = sub.add_parser("replay", help="send dead letters back to their origin topic, ids kept, audited")
    p.add_argument("offset", type=int, nargs="?", help="the dead letter's offset")
    p.add_argument("--all", action="store_true", help="every dead letter (narrow with --reason)")
    p.add_argument("--reason", help="only dead letters with this reason")
    p.add_argument("--force", action="store_true", help="replay even if the audit topic shows it was replayed")
    p.add_argument("--yes", action="store_true", help="do not ask for confirmation (--all/--force); needed "
                   "when stdin is not a terminal")
    p.set_defaults(func=_replay)
