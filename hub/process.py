"""Child processes with their output in a log file: what ``dvc-hub up``, the tests and the benchmarks start.

One class, :class:`ChildProcess`, so that starting, stopping (SIGTERM, then SIGKILL), crashing
(SIGKILL on purpose) and reading a child's log behave the same wherever the hub runs its own
processes: ``up``'s supervisor (:class:`hub.commands.up.Child`), the reliability and stream test
harnesses, and ``bench/``. Each start appends a ``===== start #N =====`` line to the log, so the
log of a process restarted ten times reads as ten chapters.

Example::

    >>> import sys, tempfile
    >>> from pathlib import Path
    >>> log = Path(tempfile.mkdtemp()) / "echo.log"
    >>> p = ChildProcess([sys.executable, "-c", "print('hello')"], log).start()
    >>> p.wait(10)
    0
    >>> p.tail(2)
    '===== start #1 =====\\nhello'
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Self

__all__ = ["ChildProcess", "die_with_parent"]


def die_with_parent() -> None:
    """Ask Linux to SIGTERM this process when its parent dies (``preexec_fn``; a no-op elsewhere).

    Runs in the child between fork and exec, so it only calls ``prctl(2)``. A test run killed with
    SIGKILL then leaves no broker, worker or connector behind.
    """
    pr_set_pdeathsig = 1
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


class ChildProcess:
    """One child process: ``argv`` run in ``cwd``, stdout and stderr appended to ``log_path``.

    ``env`` is added to this process's environment (plus ``PYTHONUNBUFFERED=1``, so that a log
    is complete up to a crash). ``new_session`` puts the child in its own session, so that Ctrl-C
    in a terminal reaches the parent only and the parent stops its children in order (``up``).
    ``die_with_parent`` makes Linux stop the child when the parent dies (tests, benchmarks).
    """

    def __init__(
        self, argv: list[str], log_path: Path, *, env: dict[str, str] | None = None, cwd: Path | None = None,
        new_session: bool = False, die_with_parent: bool = False,
    ) -> None:
        self.argv = argv
        self.log_path = log_path
        self.env = dict(env or {})
        self.cwd = cwd
        self.new_session = new_session
        self.die_with_parent = die_with_parent
        self.proc: subprocess.Popen[bytes] | None = None
        #: Times :meth:`start` ran, and times :meth:`kill9` crashed the child on purpose.
        self.starts = 0
        self.kills = 0
        #: Times :meth:`restart_if_exited` found the child gone and started it again.
        self.exits = 0

    def start(self) -> Self:
        """Start the child (again, after a stop or a crash); its log is appended to, never truncated."""
        self.starts += 1
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            log.write(f"\n===== start #{self.starts} =====\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                self.argv, cwd=self.cwd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env={**os.environ, "PYTHONUNBUFFERED": "1", **self.env}, start_new_session=self.new_session,
                # Only calls prctl(2), which is safe between fork and exec.
                preexec_fn=die_with_parent if self.die_with_parent and sys.platform == "linux" else None,  # noqa: PLW1509
            )
        return self

    @property
    def pid(self) -> int:
        """The running (or last) child's process id."""
        if self.proc is None:
            raise RuntimeError("the process has not been started")
        return self.proc.pid

    @property
    def returncode(self) -> int | None:
        """The exit code of the last child, ``None`` while it runs or before it started."""
        return None if self.proc is None else self.proc.poll()

    def alive(self) -> bool:
        """Whether the child runs now."""
        return self.proc is not None and self.proc.poll() is None

    def wait(self, timeout: float) -> int:
        """Wait for the child to exit; its exit code (``subprocess.TimeoutExpired`` after ``timeout``)."""
        if self.proc is None:
            raise RuntimeError("the process has not been started")
        return self.proc.wait(timeout)

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM and wait up to ``timeout`` seconds, then SIGKILL. Nothing happens if it is not running."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)

    def kill9(self) -> None:
        """SIGKILL: no clean-up, no flush, no commit — a crash, as the reliability tests need one."""
        if self.proc is None:
            raise RuntimeError("the process has not been started")
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        self.kills += 1

    def restart_if_exited(self) -> int | None:
        """Start the child again if it exited on its own, as a supervisor would; its exit code, or ``None``.

        A worker exits by itself when a watchdog fires (``streams.watchdog``); ``dvc-hub up`` (after
        its backoff), systemd or Kubernetes then start it again, and the test harnesses do the same
        with this. The restart is written into the log, between the two runs.
        """
        if self.proc is None or self.alive():
            return None
        code = self.proc.returncode
        self.exits += 1
        with self.log_path.open("ab") as log:
            log.write(f"\n===== exited with code {code}: restarted by the supervisor =====\n".encode())
        self.start()
        return code

    def tail(self, n: int = 40) -> str:
        """The last ``n`` lines of the log (``(no log)`` when there is none)."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no log)"

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
