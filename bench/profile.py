"""Where a worker spends its time, and how it compares with another version of itself.

Two tools for the "profile, fix what the profile shows" loop of the benchmarks:

* :class:`SamplingProfile` attaches `py-spy <https://github.com/benfred/py-spy>`_ to a running worker
  (a sampling profiler in its own process: the worker runs at full speed, unlike under cProfile,
  whose per-call hooks tripled the cost of faust's many small calls and hid what the worker does
  when it is not busy). It starts once the worker applies its first record, so imports and the
  group join stay out of the picture, and stops when the run ends. :func:`summarise` turns the raw
  stacks into the functions that hold the CPU, inclusive and own time, with idle threads left out.
* :func:`checkout` makes a temporary ``git worktree`` of another revision, so a worker of that
  revision (:class:`bench.common.WorkerProc` ``tree=``) can be run on the same broker and the same
  input right after the current one: a before/after ratio measured in one run.

Example::

    with checkout("HEAD~1") as old:
        run_pipeline(bs, run_dir, topic, n, name="baseline", tree=old)
"""

from __future__ import annotations

import collections
import contextlib
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from bench.common import ROOT

#: Leaf frames where a thread waits rather than works: their samples are left out of the shares.
IDLE_LEAVES = ("EpollSelector.select", "Condition.wait", "_worker (", "select.select", "Event.wait", "sleep (")
_LOCATION = re.compile(r" \((.*?):\d+\)")
_PREFIXES = re.compile(r"(/[^ ()]*/site-packages/|/[^ ()]*/lib/python3\.\d+/|" + re.escape(str(ROOT)) + "/)")


def py_spy() -> str | None:
    """The py-spy executable next to this Python (the ``dev`` extra installs it), or on PATH."""
    local = Path(sys.executable).parent / "py-spy"
    return str(local) if local.exists() else shutil.which("py-spy")


class SamplingProfile:
    """py-spy attached to ``pid`` from the moment ``started()`` turns true until :meth:`stop`."""

    def __init__(self, pid: int, out: Path, started: Callable[[], bool], rate_hz: int = 200) -> None:
        self.pid, self.out, self.started, self.rate_hz = pid, out, started, rate_hz
        self.proc: subprocess.Popen[bytes] | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._attach_when_started, daemon=True)

    def start(self) -> SamplingProfile:
        self._thread.start()
        return self

    def _attach_when_started(self) -> None:
        exe = py_spy()
        if exe is None:
            return
        while not self._stop.is_set() and not self.started():
            time.sleep(0.1)
        if self._stop.is_set():
            return
        self.proc = subprocess.Popen(
            [exe, "record", "--format", "raw", "--rate", str(self.rate_hz), "--output", str(self.out),
             "--pid", str(self.pid)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )

    def stop(self) -> None:
        """Stop sampling; py-spy writes its output when interrupted."""
        self._stop.set()
        self._thread.join(10)
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def summarise(raw: Path, top: int = 200) -> dict[str, Any]:
    """Shares of the worker's busy samples: by function (inclusive and own time), idle waits excluded.

    ``raw`` is py-spy's ``--format raw`` output: one line per distinct stack, ``frame;frame;... count``.
    """
    inclusive: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    busy = idle = 0
    for line in raw.read_text(encoding="utf-8", errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = [_PREFIXES.sub("", _LOCATION.sub(r" (\1)", f)) for f in stack.split(";")]
        if frames[-1].startswith(IDLE_LEAVES):
            idle += n
            continue
        busy += n
        own[frames[-1]] += n
        for f in set(frames):
            inclusive[f] += n

    def shares(c: collections.Counter[str]) -> list[tuple[str, float]]:
        return [(f, round(100 * v / busy, 1)) for f, v in c.most_common(top)] if busy else []

    return {"busy_samples": busy, "idle_samples": idle, "inclusive_pct": shares(inclusive), "own_pct": shares(own)}


@contextlib.contextmanager
def checkout(ref: str) -> Iterator[Path]:
    """A temporary ``git worktree`` of ``ref`` (removed afterwards); raises if git cannot make it."""
    tmp = Path(tempfile.mkdtemp(prefix="dvc-bench-baseline-"))
    tree = tmp / "tree"
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "--quiet", str(tree), ref],
                   check=True, capture_output=True)
    try:
        yield tree
    finally:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)],
                       check=False, capture_output=True)
        shutil.rmtree(tmp, ignore_errors=True)


def revision(ref: str) -> str:
    """``ref`` as a short commit id with its subject (what the report names as the baseline)."""
    out = subprocess.run(["git", "-C", str(ROOT), "log", "-1", "--format=%h (%cs)", ref],
                         capture_output=True, text=True, check=False)
    return out.stdout.strip() or ref
