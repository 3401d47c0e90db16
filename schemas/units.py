"""The unit registry: which administrative units exist, what they were called, and when.

Units change over time: in Thanh Hóa City 20 wards and 14 communes became 30 wards and 4 communes
on 2021-02-01, and since mid-2025 the district tier is gone and communes were merged. So the
registry is versioned by date: a unit's *kind* (phường/xã) is read from dated columns, a unit may
have a validity range, and ``unit-changes.csv`` maps old codes to new ones so that a report can
keep a unit's history together (:meth:`UnitRegistry.canonical_code`).

The data lives in CSV files under ``schemas/reference/`` (format: ``schemas/reference/README.md``).
Configuration may point :attr:`hub.config.Settings.unit_registry` at another directory or file.

Example::

    >>> from datetime import date
    >>> reg = default_registry()
    >>> reg.lookup("15856", on=date(2021, 1, 1)).kind      # Thiệu Khánh: a commune until 2021-02-01
    'xa'
    >>> reg.lookup("15856", on=date(2021, 3, 1)).kind
    'phuong'
    >>> reg.lookup("380").tier
    'HUYEN'
    >>> reg.is_known("99999")
    False
"""

from __future__ import annotations

import csv
import unicodedata
from dataclasses import dataclass
from datetime import date
from functools import lru_cache
from pathlib import Path

__all__ = ["REFERENCE_DIR", "Unit", "UnitChange", "UnitRegistry", "default_registry"]

#: Where the shipped reference data lives.
REFERENCE_DIR = Path(__file__).resolve().parent / "reference"

_KIND_PREFIX = "loai_"
_MAX_CHAIN = 32  # a longer chain of code changes is a cycle in the data


@dataclass(frozen=True, slots=True)
class Unit:
    """One administrative unit as it was on a given date."""

    code: str
    name: str
    tier: str  # "HUYEN" (city-level desk) or "XA" (ward/commune)
    kind: str  # "thanh_pho", "phuong", "xa", ...
    parent: str


@dataclass(frozen=True, slots=True)
class UnitChange:
    """From ``effective`` on, ``old_code`` is reported under ``new_code``."""

    old_code: str
    new_code: str
    effective: date
    note: str = ""


@dataclass(frozen=True, slots=True)
class _UnitRow:
    code: str
    name: str
    tier: str
    parent: str
    kinds: tuple[tuple[date, str], ...]  # ascending by date
    valid_from: date | None
    valid_to: date | None  # exclusive

    def at(self, on: date | None) -> Unit:
        kind = self.kinds[-1][1] if self.kinds else ""
        if on is not None and self.kinds:
            kind = self.kinds[0][1]  # before the first column's date, the earliest kind is the best we know
            for since, k in self.kinds:
                if since <= on:
                    kind = k
        return Unit(self.code, self.name, self.tier, kind, self.parent)

    def valid_on(self, on: date | None) -> bool:
        if on is None:
            return True
        if self.valid_from is not None and on < self.valid_from:
            return False
        return not (self.valid_to is not None and on >= self.valid_to)


class UnitRegistry:
    """Units by code, versioned by date, plus the old-code -> new-code changes.

    Build it with :meth:`load` (or :func:`default_registry` for the shipped Thanh Hóa City data).
    Lookups are dictionary reads: the registry is used on the hot path of normalisation.
    """

    def __init__(self, rows: list[_UnitRow], changes: list[UnitChange]) -> None:
        self._rows: dict[str, _UnitRow] = {}
        for r in rows:
            if r.code in self._rows:
                raise ValueError(f"unit {r.code} is defined twice in the registry data; keep one row per code")
            self._rows[r.code] = r
        by_old: dict[str, list[UnitChange]] = {}
        for c in sorted(changes, key=lambda c: c.effective):
            by_old.setdefault(c.old_code, []).append(c)
        self._changes = by_old
        self._latest = {code: r.at(None) for code, r in self._rows.items()}

    # ------------------------------------------------------------------ loading
    @classmethod
    def load(cls, path: Path | None = None) -> UnitRegistry:
        """Load a registry from a directory (every ``units-*.csv`` + ``unit-changes.csv``) or one units CSV.

        ``None`` loads the shipped data (``schemas/reference/``).
        """
        path = REFERENCE_DIR if path is None else Path(path)
        if path.is_dir():
            unit_files = sorted(path.glob("units-*.csv"))
            changes_file: Path | None = path / "unit-changes.csv"
        else:
            unit_files = [path]
            changes_file = path.with_name("unit-changes.csv")
        if not unit_files:
            raise FileNotFoundError(f"no units-*.csv file in {path}; point unit_registry at the reference directory")
        rows: list[_UnitRow] = []
        for f in unit_files:
            rows.extend(_read_units(f))
        changes = _read_changes(changes_file) if changes_file is not None and changes_file.exists() else []
        return cls(rows, changes)

    # ------------------------------------------------------------------ queries
    def lookup(self, code: str, on: date | None = None) -> Unit | None:
        """The unit ``code`` as it was on ``on`` (latest attributes when ``on`` is None); None if unknown then."""
        if on is None:
            return self._latest.get(code)
        row = self._rows.get(code)
        if row is None or not row.valid_on(on):
            return None
        return row.at(on)

    def canonical_code(self, code: str, on: date | None = None) -> str:
        """Follow ``unit-changes.csv`` from ``code`` to the code it is reported under on ``on`` (None: today's)."""
        current = code
        for _ in range(_MAX_CHAIN):
            nxt = None
            for change in self._changes.get(current, ()):
                if on is None or change.effective <= on:
                    nxt = change.new_code
            if nxt is None or nxt == current:
                return current
            current = nxt
        raise ValueError(f"unit-changes.csv has a cycle through {code}; fix the data file")

    def units(self, on: date | None = None) -> list[Unit]:
        """Every unit (valid on ``on`` when given), ordered by code with the city first."""
        out = [r.at(on) for r in self._rows.values() if r.valid_on(on)]
        out.sort(key=lambda u: (u.tier != "HUYEN", u.code.zfill(8)))
        return out

    def is_known(self, code: str) -> bool:
        """True when ``code`` is a unit of the registry, or an old code that maps to one."""
        return code in self._rows or self.canonical_code(code) in self._rows

    def resolve(self, code: str, on: date | None = None) -> Unit | None:
        """``lookup`` of the code itself, else of the code it changed into (an old code still in use)."""
        unit = self._latest.get(code) if on is None else self.lookup(code, on)
        if unit is None and code in self._changes:
            canon = self.canonical_code(code, on)
            unit = self._latest.get(canon) if on is None else self.lookup(canon, on)
        return unit

    @property
    def changes(self) -> list[UnitChange]:
        """All code changes, ordered by effective date."""
        return sorted((c for cs in self._changes.values() for c in cs), key=lambda c: c.effective)

    def __len__(self) -> int:
        return len(self._rows)


def _nfc(text: str) -> str:
    return unicodedata.normalize("NFC", text.strip())


def _read_units(path: Path) -> list[_UnitRow]:
    rows: list[_UnitRow] = []
    with path.open(encoding="utf-8-sig", newline="") as fh:
        reader = csv.DictReader(fh)
        fields = reader.fieldnames or []
        missing = {"ma_dvhc", "ten", "cap"} - set(fields)
        if missing:
            raise ValueError(f"{path}: missing column(s) {sorted(missing)}; see schemas/reference/README.md")
        kind_cols = sorted(
            (date.fromisoformat(c[len(_KIND_PREFIX) :].replace("_", "-")), c)
            for c in fields
            if c.startswith(_KIND_PREFIX)
        )
        for n, rec in enumerate(reader, start=2):
            code = (rec.get("ma_dvhc") or "").strip()
            tier = (rec.get("cap") or "").strip().upper()
            if not code or tier not in ("TINH", "HUYEN", "XA"):
                raise ValueError(f"{path}:{n}: needs a code and a tier cap in TINH/HUYEN/XA, got {code!r}/{tier!r}")
            kinds = tuple((d, (rec.get(c) or "").strip()) for d, c in kind_cols if (rec.get(c) or "").strip())
            vf = (rec.get("hieu_luc_tu") or "").strip()
            vt = (rec.get("hieu_luc_den") or "").strip()
            rows.append(
                _UnitRow(
                    code=code,
                    name=_nfc(rec.get("ten") or ""),
                    tier=tier,
                    parent=(rec.get("ma_cha") or "").strip(),
                    kinds=kinds,
                    valid_from=date.fromisoformat(vf) if vf else None,
                    valid_to=date.fromisoformat(vt) if vt else None,
                )
            )
    return rows


def _read_changes(path: Path) -> list[UnitChange]:
    out: list[UnitChange] = []
    with path.open(encoding="utf-8-sig", newline="") as fh:
        reader = csv.DictReader(fh)
        missing = {"old_code", "new_code", "effective_date"} - set(reader.fieldnames or [])
        if missing:
            raise ValueError(
                f"{path}: missing column(s) {sorted(missing)}; the header is old_code,new_code,effective_date,note"
            )
        for n, rec in enumerate(reader, start=2):
            old, new = (rec.get("old_code") or "").strip(), (rec.get("new_code") or "").strip()
            eff = (rec.get("effective_date") or "").strip()
            if not old or not new or not eff:
                raise ValueError(f"{path}:{n}: old_code, new_code and effective_date (YYYY-MM-DD) are required")
            out.append(UnitChange(old, new, date.fromisoformat(eff), _nfc(rec.get("note") or "")))
    return out


@lru_cache(maxsize=1)
def default_registry() -> UnitRegistry:
    """The shipped Thanh Hóa City registry (loaded once per process)."""
    return UnitRegistry.load(None)
