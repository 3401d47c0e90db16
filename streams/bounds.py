"""Input bounds: the plausible range of every date, number and code a canonical event may carry.

A record that parses is not yet a record the hub can count. One dossier dated in year 9999 made
the counters raise after its table write (and the recovery raise after every restart); one open
dossier dated in year 1 made ``/metrics`` export 34,000 ``period`` values; a control character in
``MaHoSo`` reached Kafka keys and logs. So the normaliser, and the state agent again for events it
did not make (a forged canonical record), check every event against :class:`InputBounds`:

* **every date field** of the event, found from the model's annotations (a field added to a model
  later is checked without anyone remembering to), nested progress rows included, lies between
  ``bounds.earliest_date`` and today + ``bounds.years_ahead`` years;
* versions are ``1..bounds.max_version``; document ids and amounts non-negative and JSON-safe;
* codes (dossier, unit, procedure, field, source) contain no control character or whitespace and
  fully match their configured pattern.

A failure raises :class:`streams.normalize.Rejected` with reason ``out_of_range`` or ``schema``
and a detail naming the field, the kind of value and the accepted range (never a personal value).

Example::

    >>> from datetime import datetime
    >>> from hub.config import BoundsSettings
    >>> from schemas.calendar import TZ
    >>> b = InputBounds(BoundsSettings(), clock=lambda: datetime(2021, 6, 1, tzinfo=TZ))
    >>> b.check_date(datetime(1, 1, 2, tzinfo=TZ), "NgayTiepNhan")
    Traceback (most recent call last):
    ...
    streams.normalize.Rejected: out_of_range: NgayTiepNhan is a date in year 1, outside the accepted range \
2000-01-01 .. 2023-06-01 (bounds.earliest_date, bounds.years_ahead)
    >>> b.check_code("H56.14767\\n-1", "MaHoSo", "dossier")
    Traceback (most recent call last):
    ...
    streams.normalize.Rejected: schema: MaHoSo contains a control character or whitespace; codes are printable \
without spaces
"""

from __future__ import annotations

import re
import time
import types
import typing
from collections.abc import Callable
from datetime import date, datetime
from functools import cache
from typing import Any, Literal, get_args, get_origin

from pydantic import AwareDatetime, BaseModel, NaiveDatetime, PastDatetime

from hub.config import BoundsSettings
from schemas.calendar import TZ

__all__ = ["CATALOGUE_SINCE_EVER", "CodeKind", "InputBounds", "date_fields", "default_bounds"]

CodeKind = Literal["dossier", "unit", "procedure", "field", "source"]

#: The catalogue's "valid since ever" (a missing ``HieuLucTu``): synthesised, not read, so not bounded.
CATALOGUE_SINCE_EVER = datetime(2000, 1, 1, tzinfo=TZ)
#: Integers the hub stores must survive JSON readers that use doubles (and orjson's 64-bit limit).
MAX_SAFE_INT = 2**53

# Canonical field -> the source field a reader of the dead letter knows (one-stop names first).
_SOURCE_NAMES = {
    "submitted_at": "NgayNopHoSo", "received_at": "NgayTiepNhan", "due_at": "NgayHenTra",
    "finished_at": "NgayKetThucXuLy", "returned_at": "NgayTra", "refused_at": "NgayTuChoi",
    "updated_at": "NgayCapNhat/cap_nhat_luc", "at": "thoi_diem/ThoiDiemXuLy", "paid_at": "thanh_toan.thoi_diem",
    "rated_at": "danh_gia.thoi_diem", "valid_from": "HieuLucTu", "valid_to": "HieuLucDen",
    "ma_ho_so": "MaHoSo", "unit_code": "MaDonVi", "procedure_code": "MaTTHC", "field_code": "MaLinhVuc",
    "version": "PhienBan", "doc_event_id": "SuKien.id", "paid_amount": "thanh_toan.so_tien",
    "applicant_kind": "LoaiDoiTuong",
}
# Canonical code fields and the pattern each is held to; "" is allowed where the field is optional.
_CODE_FIELDS: dict[str, tuple[CodeKind, bool]] = {
    "ma_ho_so": ("dossier", False), "unit_code": ("unit", False), "procedure_code": ("procedure", True),
    "field_code": ("field", True), "source": ("source", False),
}
_INT_FIELDS = ("doc_event_id", "paid_amount", "applicant_kind")


def _mentions_datetime(annotation: Any) -> bool:
    if annotation is AwareDatetime or annotation is NaiveDatetime or annotation is PastDatetime or (
        isinstance(annotation, type) and issubclass(annotation, datetime | date)
    ):
        return True
    origin = get_origin(annotation)
    if origin in (typing.Annotated, typing.Union, types.UnionType):
        return any(_mentions_datetime(a) for a in get_args(annotation))
    return False


def _nested_model(annotation: Any) -> type[BaseModel] | None:
    """The model of a ``tuple[Model, ...]`` / ``list[Model]`` field, else None."""
    if get_origin(annotation) in (tuple, list):
        for a in get_args(annotation):
            if isinstance(a, type) and issubclass(a, BaseModel):
                return a
    return None


@cache
def date_fields(model: type[BaseModel]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(datetime fields, fields holding a sequence of models) of ``model``, from its annotations.

    >>> from schemas.events import DossierEvent
    >>> dates, nested = date_fields(DossierEvent)
    >>> "received_at" in dates and "updated_at" in dates, nested
    (True, ('progress',))
    """
    dates: list[str] = []
    nested: list[str] = []
    for name, info in model.model_fields.items():
        if _mentions_datetime(info.annotation):
            dates.append(name)
        elif _nested_model(info.annotation) is not None:
            nested.append(name)
    return tuple(dates), tuple(nested)


@cache
def _plan(
    model: type[BaseModel],
) -> tuple[tuple[tuple[str, CodeKind, bool, str], ...], tuple[tuple[str, str], ...], bool]:
    """(code fields, integer fields, has a version) of ``model``: the checks of one event, found once."""
    fields = model.model_fields
    codes = tuple((name, kind, optional, _SOURCE_NAMES.get(name, name))
                  for name, (kind, optional) in _CODE_FIELDS.items() if name in fields)
    ints = tuple((name, _SOURCE_NAMES.get(name, name)) for name in _INT_FIELDS if name in fields)
    return codes, ints, "version" in fields


def _reject(reason: str, detail: str, codes: dict[str, object] | None = None) -> typing.NoReturn:
    from streams.normalize import Rejected  # the normaliser imports this module

    raise Rejected(reason, detail, codes)


class InputBounds:
    """The checks of :class:`hub.config.BoundsSettings`, compiled once; ``clock`` gives "today"."""

    def __init__(self, settings: BoundsSettings | None = None, clock: Callable[[], datetime] | None = None) -> None:
        self.settings = s = settings or BoundsSettings()
        self._clock = clock
        self.earliest = datetime(s.earliest_date.year, s.earliest_date.month, s.earliest_date.day, tzinfo=TZ)
        self._patterns: dict[CodeKind, re.Pattern[str]] = {
            "dossier": re.compile(s.dossier_code_pattern),
            "unit": re.compile(s.unit_code_pattern),
            "procedure": re.compile(s.procedure_code_pattern),
            "field": re.compile(s.field_code_pattern),
            "source": re.compile(s.source_pattern),
        }
        self._latest_at: tuple[int, datetime] | None = None

    # ------------------------------------------------------------------ the range of dates
    @property
    def latest(self) -> datetime:
        """Today + ``years_ahead`` years, at the end of that day (recomputed once an hour)."""
        if self._clock is not None:
            return self._latest_of(self._clock())
        hour = int(time.time()) // 3600
        cached = self._latest_at
        if cached is None or cached[0] != hour:
            cached = self._latest_at = (hour, self._latest_of(datetime.now(TZ)))
        return cached[1]

    def _latest_of(self, now: datetime) -> datetime:
        d = now.astimezone(TZ).date()
        y = d.year + self.settings.years_ahead
        day = date(y, d.month, 28) if (d.month, d.day) == (2, 29) else date(y, d.month, d.day)
        return datetime(day.year, day.month, day.day, 23, 59, 59, tzinfo=TZ)

    def check_date(self, value: datetime | None, field: str) -> None:
        """Reject a date outside ``earliest_date .. today + years_ahead``; ``None`` (empty) passes."""
        if value is None:
            return
        lo, hi = self.earliest, self.latest
        # Years first: comparing aware datetimes near year 1 or 9999 can overflow in the UTC shift.
        if lo.year <= value.year <= hi.year and lo <= value <= hi:
            return
        _reject("out_of_range", f"{field} is a date in year {value.year}, outside the accepted range "
                f"{lo.date()} .. {hi.date()} (bounds.earliest_date, bounds.years_ahead)")

    # ------------------------------------------------------------------ numbers and codes
    def check_version(self, value: int, field: str = "PhienBan") -> None:
        """Reject a version outside ``1 .. max_version``."""
        if not 1 <= value <= self.settings.max_version:
            _reject("out_of_range", f"{field} must be a version 1..{self.settings.max_version} "
                    f"(bounds.max_version), got a number of {len(str(abs(value)))} digits"
                    + (" below 1" if value < 1 else ""))

    @staticmethod
    def check_int(value: int | None, field: str) -> None:
        """Reject a negative integer or one past 2**53 (JSON-safe); ``None`` passes."""
        if value is not None and not 0 <= value <= MAX_SAFE_INT:
            _reject("out_of_range", f"{field} must be an integer 0..2**53, got one of {len(str(abs(value)))} digits"
                    + (" below 0" if value < 0 else ""))

    def check_code(self, value: str, field: str, kind: CodeKind, *, optional: bool = False) -> None:
        """Reject a code with control characters or whitespace, or outside its configured pattern."""
        if not value:
            if optional:
                return
            _reject("missing_key", f"{field} is required (a non-empty code)")
        # isprintable() is False for every control, format and separator character but " ".
        if not value.isprintable() or " " in value:
            _reject("schema", f"{field} contains a control character or whitespace; codes are printable without "
                    "spaces", {field: value})
        if self._patterns[kind].fullmatch(value) is None:
            pattern = getattr(self.settings, f"{kind}_code_pattern" if kind != "source" else "source_pattern")
            # The value is named only by the dead letter's codes: shown there if it is a safe code
            # (000.00.12.H56 against a 10-character unit pattern), masked if not (hub.privacy.safe_code).
            _reject("schema", f"{field} of {len(value)} characters does not match bounds."
                    f"{kind if kind == 'source' else kind + '_code'}_pattern {pattern}", {field: value})

    # ------------------------------------------------------------------ whole events
    def check_event(self, ev: BaseModel) -> None:
        """Check every date, number and code of a canonical event (see the module docstring)."""
        codes, ints, has_version = _plan(type(ev))
        for name, kind, optional, label in codes:
            value = getattr(ev, name)
            if isinstance(value, str):  # None: an optional link (a document of no dossier), the schema's call
                self.check_code(value, label, kind, optional=optional)
        if has_version:
            self.check_version(ev.version)  # type: ignore[attr-defined]  # _plan saw the field
        for name, label in ints:
            value = getattr(ev, name)
            if isinstance(value, int):
                self.check_int(value, label)
        self._check_dates(ev, "")

    def _check_dates(self, model: BaseModel, prefix: str) -> None:
        dates, nested = date_fields(type(model))
        lo, hi = self.earliest, self.latest
        for name in dates:
            value = getattr(model, name)
            # The fast path inline (this runs for every event): labels are built only for a failure.
            if value is None or (lo.year <= value.year <= hi.year and lo <= value <= hi) or (
                    name == "valid_from" and value == CATALOGUE_SINCE_EVER):
                continue
            self.check_date(value, f"{prefix}{name} ({_SOURCE_NAMES.get(name, name)})")
        for name in nested:
            for i, item in enumerate(getattr(model, name)):
                self._check_dates(item, f"{prefix}{name}[{i}].")


_DEFAULT: InputBounds | None = None


def default_bounds() -> InputBounds:
    """The bounds of the default settings, with the real clock (what a caller without settings gets)."""
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = InputBounds()
    return _DEFAULT
