"""``dvc-hub push status`` and ``dvc-hub dlq list/show`` against the real broker (through ``hub.cli.main``)."""

from __future__ import annotations

import io
import json
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from kafka import TopicPartition
from kafka.structs import OffsetAndMetadata

from hub.cli import main
from hub.config import Settings, load_settings
from hub.deadletter import DeadLetter
from hub.kafka import admin, consumer, ensure_topics, hub_topics, producer
from hub.sync.outbox import DossierState, stats_item
from schemas.figures import OutboxDossier
from tests.e2e.hubconfig import write_hub_config

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

CCCD = "038090001234"


def hub(tmp_path: Path, bootstrap: str) -> tuple[Path, Settings]:
    """A config on fresh topics (one partition each, so offsets are predictable) and those topics created."""
    path, _, _ = write_hub_config(tmp_path, bootstrap, partitions=1)
    settings = load_settings(path)
    ensure_topics(settings.kafka, hub_topics(settings))
    return path, settings


def cli(capsys: pytest.CaptureFixture[str], path: Path, *argv: str) -> tuple[int, str]:
    code = main(["--config", str(path), *argv])
    return code, capsys.readouterr().out


def test_push_status_shows_backlog_per_kind_breaker_and_last_errors(kafka_broker, tmp_path, capsys):
    path, settings = hub(tmp_path, kafka_broker.bootstrap)
    old = datetime.now(UTC) - timedelta(hours=2)
    prod = producer(settings.kafka, "test")
    try:
        for n in range(3):
            ma = f"H56.14767-210310-{n:05d}"
            item = OutboxDossier(item_id=f"dossier:{ma}:1", ma_ho_so=ma, version=1,
                                 created_at=old + timedelta(minutes=n), dossier={"MaHoSo": ma, "PhienBan": 1},
                                 progress=[])
            prod.send(settings.topics.outbox, item.model_dump_json().encode(), key=ma.encode()).get(timeout=30)
        stat = stats_item("2021-Q1", "14767", {"ky": "2021-Q1", "ma_don_vi": "14767"}, datetime.now(UTC))
        prod.send(settings.topics.outbox, stat.model_dump_json().encode(), key=b"stats|2021-Q1|14767").get(timeout=30)
        refused = DossierState(ma_ho_so="H56.14767-210310-00001", outcome="rejected",
                               detail="error_code 7: MaTTHC không hợp lệ")
        prod.send(settings.topics.sync_state, refused.model_dump_json().encode(),
                  key=refused.ma_ho_so.encode()).get(timeout=30)
    finally:
        prod.close()

    code, out = cli(capsys, path, "push", "status")
    assert code == 0
    assert "outbox backlog: 4 records" in out
    dossier_line = next(line for line in out.splitlines() if line.strip().startswith("dossier"))
    assert "3 unpushed" in dossier_line
    age = int(dossier_line.rsplit("oldest", 1)[1].split()[0])
    assert 7000 <= age <= 7300  # the oldest item is two hours old
    assert any(line.strip().startswith("stats") and "1 unpushed" in line for line in out.splitlines())
    assert "breaker: unknown" in out  # no sync service is running: it says so instead of guessing
    assert "`dvc-hub dlq list --stage portal_sync`): 1" in out
    assert "H56.14767-210310-00001: error_code 7: MaTTHC không hợp lệ" in out

    # The sync's consumer group commits everything: the backlog is empty.
    group = consumer(settings.kafka, "test-commit", group_id=f"{settings.kafka.client_id_prefix}-portal-sync")
    try:
        tp = TopicPartition(settings.topics.outbox, 0)
        group.assign([tp])
        group.commit({tp: OffsetAndMetadata(4, "", -1)})
    finally:
        group.close()
    code, out = cli(capsys, path, "push", "status")
    assert code == 0
    assert "outbox backlog: 0 records" in out


def test_dlq_list_filters_and_show_prints_one_letter(kafka_broker, tmp_path, capsys):
    path, settings = hub(tmp_path, kafka_broker.bootstrap)
    letters = [
        DeadLetter.make(stage="normalize", reason="schema", detail="MucDo is not a number", source="motcua",
                        topic=settings.topics.raw_motcua, partition=0, offset=17, event_id="motcua:H56.1:3",
                        raw=f'{{"MucDo": "x", "SoGiayToChuHoSo": "{CCCD}"}}'),
        DeadLetter.make(stage="portal_sync", reason="portal_rejected", detail="error_code 7: refused",
                        source="portal", topic=settings.topics.outbox, partition=0, offset=5,
                        event_id="dossier:H56.2:1", payload={"type": "dossier", "ma_ho_so": "H56.2"}),
    ]
    prod = producer(settings.kafka, "test")
    try:
        for letter in letters:
            prod.send(settings.topics.dead_letter, letter.value(), key=letter.key(),
                      headers=letter.headers()).get(timeout=30)
    finally:
        prod.close()

    code, out = cli(capsys, path, "dlq", "list")
    assert code == 0
    lines = out.splitlines()
    assert len(lines) == 2
    assert [line.split()[0] for line in lines] == ["0", "1"]  # offsets, in order
    assert "normalize" in lines[0]
    assert "motcua:H56.1:3" in lines[0]
    assert "portal_rejected" in lines[1]
    assert "dossier:H56.2:1" in lines[1]

    code, out = cli(capsys, path, "dlq", "list", "--stage", "portal_sync")
    assert code == 0
    assert [line.split()[0] for line in out.splitlines()] == ["1"]
    code, out = cli(capsys, path, "dlq", "list", "--reason", "timeout")
    assert (code, out.strip()) == (0, "no dead letters match")

    code, out = cli(capsys, path, "dlq", "show", "0")
    assert code == 0
    shown = json.loads(out)
    assert (shown["stage"], shown["reason"], shown["event_id"], shown["offset"]) == (
        "normalize", "schema", "motcua:H56.1:3", 17)
    assert CCCD not in out  # the excerpt was redacted when the letter was made

    code, out = cli(capsys, path, "dlq", "show", "9")
    assert code == 1
    assert "no dead letter at offset 9" in out
    assert "dvc-hub dlq list" in out


def count_fetched(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Records the dlq commands' consumers hand over, by topic (evidence of what they read)."""
    import hub.commands.dlq as dlq

    fetched: Counter[str] = Counter()
    real = dlq.consumer

    def make(*args: Any, **kwargs: Any) -> Any:
        c = real(*args, **kwargs)
        poll = c.poll

        def counted(*a: Any, **k: Any) -> Any:
            out = poll(*a, **k)
            for tp, records in out.items():
                fetched[tp.topic] += len(records)
            return out

        c.poll = counted
        return c

    monkeypatch.setattr(dlq, "consumer", make)
    return fetched


def test_dlq_show_list_and_replay_read_by_offset_not_the_topic(kafka_broker, tmp_path, capsys, monkeypatch):
    """300 letters: show reads one record, list a window, a replay of one offset that one; an offset
    past the end or deleted by retention is said so with exit code 1."""
    path, settings = hub(tmp_path, kafka_broker.bootstrap)
    dead = settings.topics.dead_letter
    prod = producer(settings.kafka, "test")
    try:
        for i in range(300):
            letter = DeadLetter.make(
                stage="normalize", reason="unknown_unit" if i % 10 == 0 else "schema", detail=f"letter {i}",
                source="motcua", topic=settings.topics.raw_motcua, partition=0, offset=i, event_id=f"motcua:e{i}",
                payload={"n": i})
            prod.send(dead, letter.value(), key=letter.key(), headers=letter.headers())
        prod.flush(timeout=60)
    finally:
        prod.close()
    fetched = count_fetched(monkeypatch)

    code, out = cli(capsys, path, "dlq", "show", "250")
    assert code == 0
    assert json.loads(out)["event_id"] == "motcua:e250"
    assert fetched[dead] == 1

    fetched.clear()
    code, out = cli(capsys, path, "dlq", "list")  # the newest 50, oldest first
    assert code == 0
    assert [int(line.split()[0]) for line in out.splitlines()] == list(range(250, 300))
    assert fetched[dead] == 50

    fetched.clear()
    code, out = cli(capsys, path, "dlq", "list", "--from-offset", "10", "--limit", "5")
    assert [int(line.split()[0]) for line in out.splitlines()] == [10, 11, 12, 13, 14]
    assert fetched[dead] == 5

    fetched.clear()
    code, out = cli(capsys, path, "dlq", "list", "--reason", "unknown_unit", "--limit", "3", "--scan", "40")
    assert [int(line.split()[0]) for line in out.splitlines()] == [270, 280, 290]
    assert fetched[dead] == 40
    assert main(["--config", str(path), "dlq", "list", "--reason", "unknown_unit", "--limit", "3", "--scan", "15"]) == 0
    out, err = capsys.readouterr()
    assert [int(line.split()[0]) for line in out.splitlines()] == [290]  # only 285..299 examined, and said so
    assert "examined the newest 15 letters (from offset 285)" in err
    assert "--from-offset 0 or a larger --scan" in err

    fetched.clear()
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    code, out = cli(capsys, path, "dlq", "replay", "123")
    assert code == 0
    assert "replayed 123 (motcua:e123)" in out
    assert fetched[dead] == 1  # the audit topic is read for earlier replays; the dead letters by offset

    code, out = cli(capsys, path, "dlq", "show", "300")
    assert code == 1
    assert "no dead letter at offset 300 (the last is offset 299" in out

    adm = admin(settings.kafka)
    try:
        adm.delete_records({TopicPartition(dead, 0): 100})  # what retention does: the log starts later
    finally:
        adm.close()
    code, out = cli(capsys, path, "dlq", "show", "42")
    assert code == 1
    assert "retention deleted it (the oldest kept is offset 100" in out
    code, out = cli(capsys, path, "dlq", "replay", "42")
    assert "skip 42: no dead letter at offset 42: retention deleted it" in out
    assert "0 replayed, 1 skipped" in out


def test_push_stats_from_enqueues_the_history_once_signed(kafka_broker, tmp_path, capsys):
    from hub.sync.outbox import StatsState, parse_item, stats_digest
    from hub.sync.signing import verify
    from hub.sync.stats import DomainStatsBuilder
    from schemas.figures import UnitFigures, count_key
    from schemas.units import default_registry

    path, settings = hub(tmp_path, kafka_broker.bootstrap)
    now = datetime.now(UTC)
    counts = {count_key("received", "TOAN_TRINH", "TRUC_TUYEN", ky): 2 for ky in ("2020-12", "2021-01", "2021-02")}
    partial = UnitFigures(partition=0, unit_code="14767", unit_tier="XA", generated_at=now, counts=counts)
    # The portal already holds January (the sync state says so, with that very body): not enqueued again.
    january = DomainStatsBuilder(default_registry(), None)("2021-01", "14767", "XA", counts, now)  # type: ignore[arg-type]
    assert january is not None
    held = StatsState(ky="2021-01", ma_don_vi="14767", digest=stats_digest(january), outcome="pushed")
    prod = producer(settings.kafka, "test")
    try:
        prod.send(settings.topics.partials, partial.model_dump_json().encode(), key=partial.key()).get(timeout=30)
        prod.send(settings.topics.sync_state, held.model_dump_json().encode(), key=b"stats|2021-01|14767").get(
            timeout=30)
    finally:
        prod.close()

    code, out = cli(capsys, path, "push", "stats", "--from", "2021-01")
    assert code == 0
    assert "enqueued for the portal: 1 (unit, period) bodies; 1 skipped" in out
    c = consumer(settings.kafka, "test-read", group_id=None)
    try:
        tp = TopicPartition(settings.topics.outbox, 0)
        c.assign([tp])
        c.seek_to_beginning(tp)
        records = [r for recs in c.poll(timeout_ms=5000).values() for r in recs]
    finally:
        c.close()
    assert [r.key for r in records] == [b"stats|2021-02|14767"]  # December 2020 starts before --from
    assert verify(settings.kafka.outbox_key(), records[0].key, records[0].value, records[0].headers) is None
    assert parse_item(records[0].value).body["ky"] == "2021-02"  # type: ignore[union-attr]

    with pytest.raises(SystemExit):
        main(["--config", str(path), "push", "stats", "--from", "2021-13"])
    assert "a month is written YYYY-MM, like 2021-01; got '2021-13'" in capsys.readouterr().err
