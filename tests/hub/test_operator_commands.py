"""Operator commands are guarded and audited: ``dlq replay`` confirmation, ``connectors reset`` lease."""

from __future__ import annotations

import io
import json
import time
from pathlib import Path
from typing import Any

import pytest

import hub.commands.dlq as dlq
from hub.cli import main
from hub.config import OperatorSettings, load_settings


class Tty(io.StringIO):
    """A stdin that is a terminal, with the operator's answer typed in."""

    def isatty(self) -> bool:
        return True


@pytest.fixture
def replays(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, ...]]:
    calls: list[tuple[Any, ...]] = []

    def fake(settings: Any, offsets: Any, reason: Any, force: bool) -> tuple[int, int]:
        calls.append((offsets, reason, force))
        return 0, 0

    monkeypatch.setattr(dlq, "replay", fake)
    return calls


@pytest.mark.parametrize("argv", [["--all"], ["--all", "--reason", "portal_rejected"], ["7", "--force"]])
def test_a_destructive_replay_is_refused_without_a_terminal_unless_yes(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], replays: list[Any], argv: list[str]
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("y\n"))  # a pipe: its "y" is not a confirmation
    assert main(["dlq", "replay", *argv]) == 2
    assert replays == []
    assert "--yes" in capsys.readouterr().err
    assert main(["dlq", "replay", *argv, "--yes"]) == 0
    assert len(replays) == 1


@pytest.mark.parametrize(("answer", "code", "ran"), [("y\n", 0, 1), ("yes\n", 0, 1), ("n\n", 2, 0), ("\n", 2, 0)])
def test_a_destructive_replay_asks_on_a_terminal(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], replays: list[Any],
    answer: str, code: int, ran: int,
) -> None:
    monkeypatch.setattr("sys.stdin", Tty(answer))
    monkeypatch.setenv("DVC_HUB_OPERATOR__NAME", "nguyen.van.a")
    assert main(["dlq", "replay", "--all", "--force"]) == code
    assert len(replays) == ran
    question = capsys.readouterr().out
    assert "[y/N]" in question
    assert "nguyen.van.a" in question  # says who it will be recorded as
    assert "already replayed" in question


def test_replaying_one_dead_letter_asks_nothing(monkeypatch: pytest.MonkeyPatch, replays: list[Any]) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    assert main(["dlq", "replay", "42"]) == 0
    assert replays == [([42], None, False)]


def test_the_audit_names_the_configured_operator(monkeypatch: pytest.MonkeyPatch) -> None:
    import getpass

    monkeypatch.setenv("DVC_HUB_OPERATOR__NAME", "tran.thi.b")
    settings = load_settings()
    assert settings.operator.identity() == "tran.thi.b"
    fields = settings.operator.audit_fields()
    assert fields["who"] == "tran.thi.b"
    assert fields["os_user"] == getpass.getuser()
    assert OperatorSettings().identity() == getpass.getuser()  # the fallback
    monkeypatch.delenv("DVC_HUB_OPERATOR__NAME")
    monkeypatch.setenv("DVC_HUB_OPERATOR", "pham.d")  # the short form
    assert load_settings().operator.identity() == "pham.d"
    monkeypatch.delenv("DVC_HUB_OPERATOR")
    monkeypatch.setenv("DVC_HUB_OPERATOR__NAME", "tran.thi.b")

    sent: list[tuple[str, dict[str, Any]]] = []

    class Producer:
        def send(self, topic: str, value: bytes, key: bytes, headers: Any = None) -> Any:
            sent.append((topic, json.loads(value)))
            return self

        def get(self, timeout: float) -> None:
            return None

        def flush(self) -> None:
            return None

        def close(self) -> None:
            return None

    letter = dlq.DeadLetter.make(stage="normalize", reason="schema", detail="x", source="motcua",
                                 topic=settings.topics.raw_motcua, payload={"a": 1})
    monkeypatch.setattr(dlq, "_letters_at", lambda _s, offsets, _p: [(o, letter) for o in offsets if o == 3])
    monkeypatch.setattr(dlq, "producer", lambda *_a, **_k: Producer())
    assert dlq.replay(settings, [3], None, force=True) == (1, 0)
    audits = [v for t, v in sent if t == settings.topics.audit]
    assert audits[0]["who"] == "tran.thi.b"
    assert audits[0]["action"] == "dlq.replay"


# ----------------------------------------------------------------------------- connectors reset


def _wait(predicate: Any, timeout: float = 40.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.3)


@pytest.mark.e2e
@pytest.mark.timeout(240)
def test_reset_is_refused_while_a_runner_runs_and_audited_after(
    tmp_path: Path, kafka_broker: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import sys

    from hub.commands.connectors import running_runners
    from hub.commands.dlq import read_topic
    from hub.kafka import ensure_topics, hub_topics
    from hub.process import ChildProcess
    from tests.e2e.hubconfig import write_hub_config

    config, _, _ = write_hub_config(tmp_path, kafka_broker.bootstrap, partitions=1)  # its own state topic
    monkeypatch.setenv("DVC_HUB_OPERATOR__NAME", "le.van.c")
    settings = load_settings(config)
    ensure_topics(settings.kafka, hub_topics(settings))
    argv = ["--config", str(config), "connectors", "reset", "qlvb", "--to", "42"]

    # The real command (its sources are not even up: it runs, retrying, and holds the connector).
    runner = ChildProcess([sys.executable, "-m", "hub.cli", "--config", str(config), "connectors", "run", "qlvb"],
                          tmp_path / "runner.log", die_with_parent=True).start()
    try:
        _wait(lambda: bool(running_runners(settings)) or not runner.alive(), timeout=90)
        assert runner.alive(), runner.tail(30)
        capsys.readouterr()
        assert main(argv) == 2
        assert "runner is running" in capsys.readouterr().err
        assert main([*argv, "--force"]) == 2  # --force never overrides a live runner
    finally:
        runner.stop(timeout=30)
    _wait(lambda: not running_runners(settings), timeout=20)  # a stopped runner leaves the group
    capsys.readouterr()
    assert main(argv) == 0
    assert "le.van.c" in capsys.readouterr().out
    audits = [json.loads(r.value) for r in read_topic(settings, settings.topics.audit)]
    assert [(a["action"], a["instance"], a["cursor_after"], a["who"]) for a in audits] == [
        ("connectors.reset", "qlvb", {"id": 42}, "le.van.c")]
    assert main(["--config", str(config), "connectors", "state", "qlvb"]) == 0
    assert json.loads(capsys.readouterr().out)["cursors"]["events"] == {"id": 42}
