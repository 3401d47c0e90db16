"""hub.process.ChildProcess: the one way the hub, its tests and its benchmarks run child processes."""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path

import pytest

from hub.process import ChildProcess

SLEEPER = [sys.executable, "-c", "import time; print('up', flush=True); time.sleep(60)"]
# Ignores SIGTERM, as a hung process does: stop() must escalate to SIGKILL.
STUBBORN = [sys.executable, "-c",
            ("import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('up', flush=True); "
             "time.sleep(60)")]


def wait_for_line(p: ChildProcess, line: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while line not in p.tail(5):
        assert time.monotonic() < deadline, p.tail()
        time.sleep(0.05)


def test_restarts_append_to_one_log_with_a_banner_per_start(tmp_path: Path) -> None:
    p = ChildProcess(SLEEPER, tmp_path / "logs" / "p.log", env={"X_MARK": "1"})
    p.start()
    wait_for_line(p, "up")
    p.kill9()
    assert not p.alive()
    assert p.returncode == -signal.SIGKILL
    p.start()
    wait_for_line(p, "===== start #2 =====")
    p.stop()
    text = (tmp_path / "logs" / "p.log").read_text()
    assert text.count("===== start #") == 2
    assert (p.starts, p.kills) == (2, 1)


def test_stop_terminates_and_escalates_to_sigkill_when_sigterm_is_ignored(tmp_path: Path) -> None:
    polite = ChildProcess(SLEEPER, tmp_path / "polite.log").start()
    wait_for_line(polite, "up")
    polite.stop(timeout=10)
    assert polite.returncode == -signal.SIGTERM

    stubborn = ChildProcess(STUBBORN, tmp_path / "stubborn.log").start()
    wait_for_line(stubborn, "up")
    t0 = time.monotonic()
    stubborn.stop(timeout=0.5)
    assert stubborn.returncode == -signal.SIGKILL
    assert time.monotonic() - t0 < 10


def test_environment_and_working_directory_reach_the_child(tmp_path: Path) -> None:
    argv = [sys.executable, "-c", "import os; print(os.environ['X_MARK'], os.getcwd())"]
    with ChildProcess(argv, tmp_path / "env.log", env={"X_MARK": "marked"}, cwd=tmp_path) as p:
        assert p.wait(10) == 0
    assert p.tail(1) == f"marked {tmp_path}"


def test_a_process_that_never_started_says_so(tmp_path: Path) -> None:
    p = ChildProcess(SLEEPER, tmp_path / "never.log")
    assert not p.alive()
    assert p.returncode is None
    assert p.tail() == "(no log)"
    p.stop()  # nothing to stop: no error
    with pytest.raises(RuntimeError, match="not been started"):
        p.kill9()


def test_restart_if_exited_starts_a_child_that_exited_on_its_own_and_leaves_a_running_one(tmp_path: Path) -> None:
    # Exits with 3 the first time (a watchdog's exit), then sleeps: the marker file says which run it is.
    marker = tmp_path / "ran-once"
    argv = [sys.executable, "-c",
            (f"import pathlib, sys, time; m = pathlib.Path({str(marker)!r}); first = not m.exists(); m.touch(); "
             "print('up', flush=True); sys.exit(3) if first else time.sleep(60)")]
    p = ChildProcess(argv, tmp_path / "w.log")
    assert p.restart_if_exited() is None  # never started: nothing to restart
    p.start()
    assert p.wait(10) == 3
    assert p.restart_if_exited() == 3
    wait_for_line(p, "===== start #2 =====")
    assert p.alive()
    assert p.restart_if_exited() is None  # running: left alone
    p.stop()
    text = (tmp_path / "w.log").read_text()
    assert "===== exited with code 3: restarted by the supervisor =====" in text
    assert (p.starts, p.exits) == (2, 1)
