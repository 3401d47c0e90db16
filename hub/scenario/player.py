"""Play a scenario into the simulators' :class:`~hub.simulators.world.World`, through source time.

The player owns the World's manual :class:`~hub.simulators.clock.SimClock`. Every dossier version
becomes ``world.upsert_dossier(snapshot, updated_at=<its historical time>)`` (so ``NgayCapNhat`` is
historical), every QLVB event ``world.add_document_event`` and every portal change
``world.upsert_portal_item`` — each when the clock reaches its time. With faults on, some versions
commit late (``visible_delay`` up to ``faults.late_max_s`` seconds of source time), the trap a
connector that never looks back falls into.

    >>> from hub.scenario.thanhhoa2021 import build_scenario
    >>> from hub.simulators.clock import SimClock
    >>> from hub.simulators.world import World
    >>> scenario = build_scenario(seed=1, scale=0.005)
    >>> world = World(SimClock.manual(scenario.start))
    >>> player = ScenarioPlayer(world, scenario, fast=True, tick_s=0.0)
    >>> player.play()                                  # blocking; start() runs it in a thread
    >>> player.done, player.progress()[0] == player.progress()[1]
    (True, True)

Pacing:

- ``fast=True``: ``chunk_size`` changes at a time, the clock set to the last one's time, then a pause
  of ``tick_s`` real seconds, so a polling connector sees the clock move in steps and changes
  whose commit is still pending when it polls (late visibility) really happen.
- ``fast=False``: source time runs ``speedup`` times faster than real time (86 400 = a day per second).

After the last change the clock keeps moving (``settle_step_s`` per tick) until every late commit is
visible, then :attr:`ScenarioPlayer.done` turns true and the clock stops.
"""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta

from hub.scenario.generator import Scenario
from hub.simulators.faults import Faults
from hub.simulators.world import World

__all__ = ["ScenarioPlayer"]

# Action kinds, in the order they are released when they share a second.
_DOSSIER, _PORTAL, _DOCUMENT = 0, 1, 2


class ScenarioPlayer:
    """Feeds one scenario into one fresh World (see the module docstring)."""

    def __init__(
        self,
        world: World,
        scenario: Scenario,
        *,
        fast: bool,
        faults: Faults | None = None,
        speedup: float = 86_400.0,
        chunk_size: int = 200,
        tick_s: float | None = None,
        settle_step_s: float = 10.0,
    ) -> None:
        if not world.clock.is_manual:
            raise ValueError("the scenario player drives source time: build the World with SimClock.manual(...)")
        if speedup <= 0 or chunk_size < 1 or settle_step_s <= 0:
            raise ValueError("speedup and settle_step_s must be > 0 and chunk_size >= 1")
        self.world = world
        self.scenario = scenario
        self.fast = fast
        self.faults = faults
        self.speedup = speedup
        self.chunk_size = chunk_size
        self.tick_s = (0.01 if fast else 0.05) if tick_s is None else tick_s
        self.settle_step = timedelta(seconds=settle_step_s)
        actions: list[tuple[datetime, int, int, int]] = []
        for i, lc in enumerate(scenario.dossiers):
            actions.extend((v.at, _DOSSIER, i, j) for j, v in enumerate(lc.versions))
            actions.extend((p.at, _PORTAL, i, j) for j, p in enumerate(lc.portal))
        actions.extend((d.at, _DOCUMENT, k, 0) for k, d in enumerate(scenario.documents))
        # (time, kind, dossier, version): a dossier's versions keep their order within a second.
        actions.sort()
        self._actions = actions
        self._next = 0
        self._latest_visible = scenario.start
        self._primed = False
        self._done = False
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ state

    def progress(self) -> tuple[int, int]:
        """(changes released, changes in the scenario): dossier versions, portal changes and QLVB events."""
        return self._next, len(self._actions)

    @property
    def done(self) -> bool:
        """True once everything is released and every late commit has become visible."""
        return self._done

    @property
    def last_change_at(self) -> datetime:
        """Source time of the scenario's last change."""
        return self._actions[-1][0] if self._actions else self.scenario.start

    # ------------------------------------------------------------------ control

    def start(self) -> None:
        """Play in a daemon thread (what ``dvc-hub up --scenario`` does)."""
        if self._thread is not None:
            raise RuntimeError("this player was already started; build a new one to replay")
        self._thread = threading.Thread(target=self.play, name=f"scenario-{self.scenario.name}", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop playing (what was released stays released) and wait for the thread."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the playing thread; True if it has finished."""
        if self._thread is None:
            return self._done
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def play(self) -> None:
        """Play to the end (blocking), paced per ``fast``/``speedup``, then let late commits surface."""
        self._prime()
        if self.fast:
            while self._next < len(self._actions) and not self._stop.is_set():
                with self._lock:
                    end = min(self._next + self.chunk_size, len(self._actions))
                    self._release_upto_index(end)
                    self._move_clock(self._actions[end - 1][0])
                self._pause()
        else:
            real0 = time.monotonic()
            src0 = self.world.clock.now()
            while not self._stop.is_set():
                target = src0 + timedelta(seconds=(time.monotonic() - real0) * self.speedup)
                with self._lock:
                    self._release_until(target)
                    self._move_clock(target)
                if self._next >= len(self._actions) and target >= self._settle_target():
                    break
                self._pause()
        self._settle()

    def play_until(self, dt: datetime) -> int:
        """Release every change up to ``dt`` (inclusive) at once and set the clock there; returns how many.

        For tests that want the World at a given moment; no pacing, no thread.
        """
        self._prime()
        with self._lock:
            before = self._next
            self._release_until(dt)
            self._move_clock(dt)
            if self._next >= len(self._actions) and dt >= self._settle_target():
                self._done = True
            return self._next - before

    # ------------------------------------------------------------------ internals

    def _prime(self) -> None:
        with self._lock:
            if self._primed:
                return
            self._primed = True
            self.world.clock.set(self.scenario.start)
            for unit in self.scenario.units:
                self.world.set_catalogue(unit.code, self.scenario.catalogue_rows(unit.code))

    def _pause(self) -> None:
        if self.tick_s > 0:
            self._stop.wait(self.tick_s)

    def _move_clock(self, to: datetime) -> None:
        if to > self.world.clock.now():
            self.world.clock.set(to)

    def _settle_target(self) -> datetime:
        return max(self.last_change_at, self._latest_visible) + timedelta(seconds=1)

    def _settle(self) -> None:
        """Keep the clock moving until every late commit is visible, then stop it."""
        while not self._stop.is_set() and self._next >= len(self._actions):
            target = self._settle_target()
            now = self.world.clock.now()
            if now >= target:
                self._done = True
                return
            self._move_clock(min(target, now + self.settle_step))
            self._pause()

    def _release_until(self, dt: datetime) -> None:
        end = self._next
        while end < len(self._actions) and self._actions[end][0] <= dt:
            end += 1
        self._release_upto_index(end)

    def _release_upto_index(self, end: int) -> None:
        dossiers = self.scenario.dossiers
        for k in range(self._next, end):
            at, kind, i, j = self._actions[k]
            if kind == _DOSSIER:
                lc = dossiers[i]
                delay = self.faults.visible_delay() if self.faults is not None else timedelta(0)
                version = self.world.upsert_dossier(lc.snapshot(j), updated_at=at, visible_delay=delay)
                if version != j + 1:
                    raise RuntimeError(
                        f"the World already held versions of {lc.ma_ho_so} (got PhienBan {version}, expected {j + 1}); "
                        "play a scenario into a fresh World"
                    )
                self._latest_visible = max(self._latest_visible, at + delay)
            elif kind == _PORTAL:
                self.world.upsert_portal_item(dossiers[i].portal[j].item)
            else:
                doc = self.scenario.documents[i]
                self.world.add_document_event(doc.unit, doc.loai, doc.at, doc.van_ban, doc.ma_ho_so)
            self._next = k + 1
