from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from schemas.calendar import TZ, WorkingCalendar
from schemas.units import Unit, UnitRegistry, default_registry
from tests.domain.factories import must


def test_shipped_registry_has_the_city_and_34_wards_communes():
    reg = default_registry()
    units = reg.units()
    assert len(units) == 35
    assert units[0].code == "380"
    assert units[0].tier == "HUYEN"
    assert sum(1 for u in units if u.tier == "XA") == 34
    assert must(reg.lookup("14767")).name == "Điện Biên"


def count(units: list[Unit], kind: str) -> int:
    return sum(1 for u in units if u.kind == kind)


def test_kind_follows_the_dated_columns():
    reg = default_registry()
    on_2020 = reg.units(on=date(2020, 12, 1))
    on_2021 = reg.units(on=date(2021, 2, 1))
    assert (count(on_2020, "phuong"), count(on_2020, "xa")) == (20, 14)
    assert (count(on_2021, "phuong"), count(on_2021, "xa")) == (30, 4)
    assert must(reg.lookup("16396", on=date(2021, 1, 31))).kind == "xa"
    assert must(reg.lookup("16396", on=date(2021, 2, 1))).kind == "phuong"


def test_unknown_code():
    reg = default_registry()
    assert reg.lookup("99999") is None
    assert not reg.is_known("99999")
    assert reg.canonical_code("99999") == "99999"


def test_code_changes_mechanism(tmp_path: Path):
    (tmp_path / "units-test.csv").write_text(
        "ma_dvhc,ten,loai_2020_01_01,cap,ma_cha,hieu_luc_tu,hieu_luc_den\n"
        "1,Old A,phuong,XA,9,,2025-07-01\n"
        "2,Old B,xa,XA,9,,2025-07-01\n"
        "3,New AB,phuong,XA,9,2025-07-01,\n"
        "4,Newer,phuong,XA,9,2026-01-01,\n",
        encoding="utf-8",
    )
    (tmp_path / "unit-changes.csv").write_text(
        "old_code,new_code,effective_date,note\n1,3,2025-07-01,merge\n2,3,2025-07-01,merge\n3,4,2026-01-01,rename\n",
        encoding="utf-8",
    )
    reg = UnitRegistry.load(tmp_path)
    assert reg.canonical_code("1", date(2025, 6, 30)) == "1"
    assert reg.canonical_code("1", date(2025, 7, 1)) == "3"
    assert reg.canonical_code("2", date(2026, 3, 1)) == "4"  # chains are followed
    assert reg.canonical_code("1") == "4"
    assert reg.lookup("1", on=date(2025, 7, 1)) is None  # no longer valid
    assert must(reg.lookup("1", on=date(2025, 6, 1))).name == "Old A"
    assert reg.lookup("3", on=date(2025, 1, 1)) is None
    assert reg.is_known("1")
    assert reg.is_known("3")
    assert [u.code for u in reg.units(on=date(2025, 8, 1))] == ["3"]


def test_code_changes_cycle_is_reported(tmp_path: Path):
    (tmp_path / "units-x.csv").write_text("ma_dvhc,ten,cap\n1,A,XA\n", encoding="utf-8")
    (tmp_path / "unit-changes.csv").write_text(
        "old_code,new_code,effective_date,note\n1,2,2025-01-01,\n2,1,2025-01-01,\n", encoding="utf-8"
    )
    with pytest.raises(ValueError, match="cycle"):
        UnitRegistry.load(tmp_path).canonical_code("1")


def test_bad_units_file_says_what_is_missing(tmp_path: Path):
    (tmp_path / "units-x.csv").write_text("code,name\n1,A\n", encoding="utf-8")
    with pytest.raises(ValueError, match="missing column"):
        UnitRegistry.load(tmp_path)


CAL = WorkingCalendar()


@pytest.mark.parametrize(
    ("d", "working"),
    [
        (date(2021, 1, 1), False),  # New Year
        (date(2021, 2, 10), False),  # Tết (lunar) bridge
        (date(2021, 2, 12), False),  # Tết
        (date(2021, 2, 17), True),
        (date(2021, 4, 21), False),  # Hùng Kings (lunar 10/3)
        (date(2021, 1, 16), False),  # Saturday
        (date(2021, 1, 18), True),
    ],
)
def test_working_days(d, working):
    assert CAL.is_working_day(d) is working


def test_add_working_days():
    fri_3pm = datetime(2021, 1, 15, 15, 0, tzinfo=TZ)
    assert CAL.add_working_days(fri_3pm, 1) == datetime(2021, 1, 18, 15, 0, tzinfo=TZ)
    assert CAL.add_working_days(datetime(2021, 1, 18, 8, 0, tzinfo=TZ), 1) == datetime(2021, 1, 18, 17, 30, tzinfo=TZ)
    # received during the lunch break: the clock starts at 13:30 (4 h that afternoon, 4 h the next morning)
    assert CAL.add_working_days(datetime(2021, 1, 18, 12, 30, tzinfo=TZ), 1) == datetime(2021, 1, 19, 12, 0, tzinfo=TZ)
    # received on Saturday evening: the clock starts Monday 08:00
    assert CAL.add_working_days(datetime(2021, 1, 16, 19, 0, tzinfo=TZ), 2) == datetime(2021, 1, 19, 17, 30, tzinfo=TZ)
    # Tết: 2021-02-09 (Tue) 10:00 + 16 h: 6 h that day, 10..16 Feb off, 8 h on the 17th, 2 h on the 18th
    assert CAL.add_working_days(datetime(2021, 2, 9, 10, 0, tzinfo=TZ), 2) == datetime(2021, 2, 18, 10, 0, tzinfo=TZ)
    # a long processing time crosses weeks and holidays: 10 days from Mon 2021-04-19 08:00 skips 21/4, 30/4, 1-3/5
    assert CAL.add_working_days(datetime(2021, 4, 19, 8, 0, tzinfo=TZ), 10) == datetime(2021, 5, 5, 17, 30, tzinfo=TZ)
    # UTC input is converted to local time
    utc = datetime(2021, 1, 15, 1, 0, tzinfo=UTC)
    assert CAL.add_working_days(utc, 0) == datetime(2021, 1, 15, 8, 0, tzinfo=TZ)
    with pytest.raises(ValueError, match="days must be"):
        CAL.add_working_days(fri_3pm, -1)


def test_working_days_between():
    assert CAL.working_days_between(date(2021, 2, 9), date(2021, 2, 18)) == 2
    assert CAL.working_days_between(date(2021, 2, 18), date(2021, 2, 9)) == -2
    assert CAL.working_days_between(date(2021, 1, 15), date(2021, 1, 15)) == 0
    assert CAL.working_days_between(date(2021, 1, 15), date(2021, 1, 22)) == 5


def test_extra_days():
    cal = WorkingCalendar(extra_holidays=[date(2021, 1, 18)], extra_working_days=[date(2021, 1, 16)])
    assert not cal.is_working_day(date(2021, 1, 18))
    assert cal.is_working_day(date(2021, 1, 16))
