"""The stall watchdog: a source partition whose committed offset stops while records wait.

faust can stop fetching one partition of a topic for good while every other partition flows (faust
issues #629 and #523; seen here once in a SIGKILL reliability run: ``raw.catalogue`` partition 1
stayed at offset 318 of 1,882 for ten minutes, the figures never converged, and nothing was logged).
The worker looks healthy from outside: it answers HTTP, its other agents work, its lag gauge shows
a number that an operator may take for load. A restart always heals it: the worker rejoins the
group, restores its tables and resumes from the committed offsets (replays are absorbed by the
idempotent state, see :mod:`streams.app`).

So the worker watches itself. Every lag measurement gives, per partition of its source topics,
the group's committed offset and the partition's end offset. A partition is **stalled** when
records wait on it (end > committed) and its committed offset has not moved for
``worker.stall_timeout_s`` of consecutive measurements. A busy worker commits every
``commit_interval_s`` for every partition it makes progress on, so a slow one is never taken for
a stalled one; only "no progress at all with work waiting" is. The clock restarts whenever a
measurement fails (the broker may be away: nothing can move then) or the worker is recovering
(recovery has a watch of its own, below).

What the worker does with a stall is in :meth:`streams.app.HubRuntime.refresh_lag`: it logs the
partition and crashes on purpose, and its supervisor (``dvc-hub up``, systemd, Kubernetes)
starts it again.

**Table recovery is watched the same way.** After a rebalance faust restores the tables from
their changelog topics and waits, without a limit, until it has read every changelog partition
up to its highwater. A CI run saw that wait never end: worker ``a`` of two read no changelog
record at all for four minutes, with faust logging "No event received for active tp" every five
seconds and the worker never ready (the cause inside faust is unknown; a restart heals it as it
heals the stalls above). While the worker recovers, the same watch runs on
:func:`recovery_positions`: per changelog partition, the last offset recovery applied and the
highwater it must reach. No progress for ``worker.stall_timeout_s`` with records left is a stall.

Example::

    >>> w = StallWatch(timeout_s=60)
    >>> w.observe({("raw", 1): (318, 1882)}, now=0.0)
    []
    >>> [s.describe() for s in w.observe({("raw", 1): (318, 1882)}, now=61.0)]
    ['raw[1] at offset 318 with 1564 records waiting, no progress for 61 s']
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

#: (topic, partition) -> (committed offset, end offset)
Positions = Mapping[tuple[str, int], tuple[int, int]]


@dataclass(frozen=True)
class Stall:
    """One stalled partition."""

    topic: str
    partition: int
    committed: int
    waiting: int
    for_s: float

    def describe(self) -> str:
        return (f"{self.topic}[{self.partition}] at offset {self.committed} with {self.waiting} records waiting, "
                f"no progress for {self.for_s:.0f} s")


def recovery_positions(recovery: Any) -> Positions:
    """faust's table-recovery progress as watch positions: (last offset applied, highwater).

    ``recovery`` is faust's ``Recovery`` service (``app.tables.recovery``): its ``active_offsets``
    hold the last changelog offset applied per active partition (-1: none yet) and its
    ``active_highwaters`` the offset of the last record there, which recovery must reach.

    >>> from types import SimpleNamespace as NS
    >>> from faust.types import TP
    >>> r = NS(active_tps={TP("d-changelog", 2)}, active_offsets={}, active_highwaters={TP("d-changelog", 2): 56})
    >>> recovery_positions(r)
    {('d-changelog', 2): (-1, 56)}
    """
    out: dict[tuple[str, int], tuple[int, int]] = {}
    for tp in list(recovery.active_tps):
        offset = recovery.active_offsets.get(tp)
        highwater = recovery.active_highwaters.get(tp)
        out[(tp.topic, tp.partition)] = (-1 if offset is None else int(offset),
                                         -1 if highwater is None else int(highwater))
    return out


class WorkerStalledError(RuntimeError):
    """Raised into faust to stop a worker that stopped fetching a partition (see the module docstring)."""


class StallWatch:
    """Tracks, per partition, since when its committed offset has stood still with records waiting."""

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        #: (topic, partition) -> (committed offset last seen, when it was first seen at that offset)
        self._since: dict[tuple[str, int], tuple[int, float]] = {}

    @property
    def enabled(self) -> bool:
        return self.timeout_s > 0

    def forget(self) -> None:
        """Restart every clock (a failed measurement, a rebalance, a recovery)."""
        self._since.clear()

    def observe(self, positions: Positions, now: float) -> list[Stall]:
        """Take one measurement; return the partitions stalled for longer than the timeout."""
        if not self.enabled:
            return []
        stalls: list[Stall] = []
        seen: dict[tuple[str, int], tuple[int, float]] = {}
        for tp, (committed, end) in positions.items():
            if end <= committed:
                continue  # nothing waits: an idle partition is not a stalled one
            last = self._since.get(tp)
            since = last[1] if last is not None and last[0] == committed else now
            seen[tp] = (committed, since)
            if now - since >= self.timeout_s:
                stalls.append(Stall(tp[0], tp[1], committed, end - committed, now - since))
        self._since = seen
        return sorted(stalls, key=lambda s: (s.topic, s.partition))
