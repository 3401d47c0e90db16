"""Seeded, switchable misbehaviour of the simulated systems.

Every trap of ``contracts.md`` that a real deployment springs at random is a field here, all off by
default so a test turns on exactly the one it is about. The randomness comes from one
``random.Random(seed)``: the same seed and the same sequence of requests give the same faults, so a
failing run can be replayed.

    >>> f = Faults(seed=7, p_5xx=0.1, latency_ms=(5, 20))
    >>> f2 = Faults.from_spec("seed=7,p_5xx=0.1,latency_ms=5-20")
    >>> f.p_5xx == f2.p_5xx and f.latency_ms == f2.latency_ms
    True
    >>> Faults.all_on(seed=1).p_429 > 0
    True

Which system honours which switch (docs/simulators.md has the full table):

- every app: ``latency_ms``, ``p_429``/``retry_after_s``, ``p_5xx``, ``p_timeout``/``timeout_s``/
  ``timeout_drop``, ``p_reset``, ``maintenance_s``/``maintenance_mode``, ``nfd``;
- one-stop and portal: ``p_error_body`` (HTTP 200 with an error in the body);
- one-stop (through the callers of ``World.upsert_dossier``): ``late_visibility``/``late_max_s``;
- QLVB: ``p_duplicate``, ``p_hostile_xml``;
- portal: ``p_move``, ``revoke_every``, ``p_reset_after_store``.
"""

from __future__ import annotations

import dataclasses
import random
import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

__all__ = ["Faults"]


@dataclass
class Faults:
    """Fault switches of one simulated app; probabilities are per request, in ``[0, 1]``."""

    seed: int = 0
    #: Extra latency before every answer, uniform in ``[min, max]`` milliseconds.
    latency_ms: tuple[int, int] = (0, 0)
    #: Answer 429 Too Many Requests with ``Retry-After: retry_after_s``.
    p_429: float = 0.0
    retry_after_s: int = 1
    #: Answer 500, 502, 503 or 504 (seeded choice).
    p_5xx: float = 0.0
    #: Sleep ``timeout_s`` (longer than a sane client timeout) before answering, or, with
    #: ``timeout_drop``, before closing the connection without an answer.
    p_timeout: float = 0.0
    timeout_s: float = 10.0
    timeout_drop: bool = False
    #: Close the connection without an answer (the client sees a reset / disconnect).
    p_reset: float = 0.0
    #: HTTP 200 whose body carries ``error_code`` "-1" "Lỗi hệ thống" (one-stop and portal).
    p_error_body: float = 0.0
    #: Fraction of dossier changes that become visible late, and the largest delay in seconds
    #: (source clock). Applied by whoever writes the World, through :meth:`visible_delay`.
    late_visibility: float = 0.0
    late_max_s: float = 120.0
    #: Serve Vietnamese text decomposed (NFD).
    nfd: bool = False
    #: QLVB: re-serve up to three events of the previous page at the start of a page.
    p_duplicate: float = 0.0
    #: Portal source: while a client reads page 2 or later, an item of an earlier page changes and
    #: moves to the end (an offset-paging client then skips one item).
    p_move: float = 0.0
    #: Portal: revoke the presented token on every N-th authenticated request (0 = never).
    revoke_every: int = 0
    #: QLVB: serve a DTD, a billion-laughs bomb, an external entity or a truncated body.
    p_hostile_xml: float = 0.0
    #: Portal targets: store the push, then close the connection so the answer is lost.
    p_reset_after_store: float = 0.0
    #: A maintenance window of this many seconds (source clock), starting at the first request
    #: after the switch is set; the app answers 503 or, with ``maintenance_mode="timeout"``, hangs.
    maintenance_s: float = 0.0
    maintenance_mode: Literal["503", "timeout"] = "503"

    _rng: random.Random = field(init=False, repr=False, compare=False)
    _lock: threading.Lock = field(init=False, repr=False, compare=False)
    _maintenance_start: datetime | None = field(init=False, default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)  # noqa: S311 - reproducible faults, not crypto
        self._lock = threading.Lock()
        self.validate()

    # ------------------------------------------------------------------ construction

    @classmethod
    def all_on(cls, seed: int = 0) -> Faults:
        """Every trap at a moderate rate that a client with retries and backoff still gets through.

        Maintenance windows stay off (minutes of outage belong to dedicated tests and soaks).
        """
        return cls(
            seed=seed,
            latency_ms=(0, 40),
            p_429=0.03,
            retry_after_s=1,
            p_5xx=0.04,
            p_timeout=0.01,
            timeout_s=5.0,
            p_reset=0.02,
            p_error_body=0.03,
            late_visibility=0.2,
            late_max_s=120.0,
            nfd=True,
            p_duplicate=0.1,
            p_move=0.1,
            revoke_every=50,
            p_hostile_xml=0.02,
            p_reset_after_store=0.05,
        )

    @classmethod
    def from_spec(cls, spec: str) -> Faults:
        """Parse ``"all_on,seed=3,p_5xx=0.1,latency_ms=10-50,nfd"`` (the CLI's ``--faults``).

        Items are comma-separated ``name=value``; a bare ``name`` sets a boolean switch; ``all_on``
        and ``off`` are presets applied first. Unknown names raise :class:`ValueError` listing the
        known ones.
        """
        faults = cls()
        faults.apply_spec(spec)
        return faults

    def apply_spec(self, spec: str) -> None:
        """Apply a spec (syntax of :meth:`from_spec`) to this object in place.

        With a preset (``all_on`` or ``off``) every switch is first reset to the preset; without
        one only the named switches change.
        """
        values: dict[str, str] = {}
        preset: str | None = None
        for item in (p.strip() for p in spec.split(",")):
            if not item:
                continue
            name, sep, value = item.partition("=")
            name = name.strip()
            if not sep and name in ("all_on", "off"):
                preset = name
                continue
            values[name] = value.strip() if sep else "true"
        if preset is not None:
            seed = int(values.get("seed", self.seed))
            base = Faults.all_on(seed) if preset == "all_on" else Faults(seed=seed)
            self.update(base.to_dict())
        self.update(values)

    @classmethod
    def field_names(cls) -> list[str]:
        """Names of the public switches."""
        return [f.name for f in dataclasses.fields(cls) if not f.name.startswith("_")]

    def update(self, changes: dict[str, Any]) -> None:
        """Set switches from ``changes`` (values may be strings, as in a spec, or JSON values).

        ``seed`` re-seeds the random generator. Raises :class:`ValueError` on an unknown name or a
        bad value, leaving the object unchanged.
        """
        known = {f.name: f for f in dataclasses.fields(self) if not f.name.startswith("_")}
        parsed: dict[str, Any] = {}
        for name, raw in changes.items():
            if name not in known:
                raise ValueError(f"unknown fault switch {name!r}; known: {', '.join(sorted(known))}")
            parsed[name] = _coerce(name, raw, getattr(self, name))
        candidate = dataclasses.replace(self, **parsed)  # validates in __post_init__
        with self._lock:
            for name, value in parsed.items():
                setattr(self, name, value)
            if "seed" in parsed:
                self._rng = random.Random(candidate.seed)  # noqa: S311 - reproducible faults
            if "maintenance_s" in parsed:
                self._maintenance_start = None

    def validate(self) -> None:
        """Raise :class:`ValueError` if a probability or a range is out of bounds."""
        for f in dataclasses.fields(self):
            if f.name.startswith("p_") or f.name == "late_visibility":
                value = getattr(self, f.name)
                if not 0.0 <= value <= 1.0:
                    raise ValueError(f"{f.name} must be within [0, 1], got {value}")
        low, high = self.latency_ms
        if low < 0 or high < low:
            raise ValueError(f"latency_ms must be a range min-max with 0 <= min <= max, got {self.latency_ms}")
        if self.revoke_every < 0 or self.retry_after_s < 0 or self.timeout_s < 0 or self.late_max_s < 0:
            raise ValueError("revoke_every, retry_after_s, timeout_s and late_max_s must be >= 0")
        if self.maintenance_mode not in ("503", "timeout"):
            raise ValueError(f"maintenance_mode must be '503' or 'timeout', got {self.maintenance_mode!r}")

    def to_dict(self) -> dict[str, Any]:
        """The public switches as JSON-ready values (what ``GET /_sim/faults`` shows)."""
        out: dict[str, Any] = {}
        for name in self.field_names():
            value = getattr(self, name)
            out[name] = list(value) if isinstance(value, tuple) else value
        return out

    # ------------------------------------------------------------------ seeded draws

    def roll(self, p: float) -> bool:
        """True with probability ``p`` (never draws when ``p`` is 0, so off switches cost nothing)."""
        if p <= 0.0:
            return False
        with self._lock:
            return self._rng.random() < p

    def randint(self, low: int, high: int) -> int:
        """A seeded integer in ``[low, high]``."""
        with self._lock:
            return self._rng.randint(low, high)

    def choice(self, options: list[Any] | tuple[Any, ...]) -> Any:
        """A seeded pick among ``options``."""
        with self._lock:
            return self._rng.choice(options)

    def latency_s(self) -> float:
        """This request's extra latency in seconds (0 when off)."""
        low, high = self.latency_ms
        if high <= 0:
            return 0.0
        with self._lock:
            return self._rng.uniform(low, high) / 1000.0

    def visible_delay(self) -> timedelta:
        """The late-visibility delay to pass to ``World.upsert_dossier`` for one change.

        Zero for most changes; for a ``late_visibility`` fraction, 1 s to ``late_max_s`` s.
        """
        if not self.roll(self.late_visibility) or self.late_max_s < 1:
            return timedelta(0)
        with self._lock:
            return timedelta(seconds=self._rng.randint(1, int(self.late_max_s)))

    def in_maintenance(self, now: datetime) -> bool:
        """Whether ``now`` (source clock) falls in the maintenance window.

        The window opens at the first call after ``maintenance_s`` is set and lasts that long.
        """
        if self.maintenance_s <= 0:
            return False
        with self._lock:
            if self._maintenance_start is None:
                self._maintenance_start = now
            return now < self._maintenance_start + timedelta(seconds=self.maintenance_s)


def _coerce(name: str, raw: Any, current: Any) -> Any:
    """Turn a spec string or JSON value into the type of the switch ``name``."""
    try:
        if isinstance(current, bool):
            if isinstance(raw, bool):
                return raw
            text = str(raw).strip().lower()
            if text in ("1", "true", "yes", "on"):
                return True
            if text not in ("0", "false", "no", "off"):
                raise TypeError(text)  # noqa: TRY301 - converted to ValueError with context below
            return False
        if isinstance(current, tuple):
            if isinstance(raw, list | tuple):
                low, high = raw
            else:
                text = str(raw)
                low, _, high = text.partition("-")
                high = high or low
            return (int(low), int(high))
        if isinstance(current, int):
            return int(raw)
        if isinstance(current, float):
            return float(raw)
        return str(raw)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"bad value {raw!r} for fault switch {name!r}") from exc
