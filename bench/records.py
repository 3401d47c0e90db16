"""Synthetic raw one-stop records, as a connector writes them, and a timed producer.

The payloads have the shape of the one-stop contract (contracts.md §1) after the privacy edge: no
name or phone, the ID number replaced by its keyed hash (``IdHash``), a progress list that grows
with each version. Dossiers are spread over the city's 35 units, 2021's working hours, three
channels, levels 3 and 4 and the usual lifecycle (received → processing → processed/returned).

The envelope is serialised with orjson straight from a dict with exactly the fields of
:class:`schemas.raw.RawRecord` (a test checks that it validates), because building two million
pydantic models would make the *generator* the bottleneck of the producing benchmark.

Example::

    >>> recs = list(dossier_records(2, versions=3))
    >>> len(recs), recs[0][0] == recs[1][0]
    (6, True)
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from hub.config import Settings
from hub.kafka import producer
from hub.privacy import hash_id_number
from schemas.units import default_registry

_START = datetime(2021, 1, 4, 8, 0)  # naive local time: only formatted, never compared
_FETCHED = datetime(2022, 1, 5, 9, 0, tzinfo=UTC).isoformat()
_HASH_KEY = b"bench-only-key"
_LEVELS = (3, 4)


def _units() -> list[str]:
    return [u.code for u in default_registry().units()]


def _compact(dt: datetime) -> str:
    return dt.strftime("%Y%m%d%H%M%S")


def snapshot(i: int, version: int, final_status: int, units: list[str], prefix: str = "H56") -> dict[str, Any]:
    """Version ``version`` (1-based) of dossier number ``i``: its full current snapshot."""
    unit = units[i % len(units)]
    day = _START + timedelta(days=(i * 7) % 360, minutes=(i * 13) % 480)
    level = _LEVELS[i % 2]
    proc = f"1.00{3000 + (i % 40):04d}.000.00.00.H56"
    received = day
    due = day + timedelta(days=3 + i % 5)
    statuses = [2, 4, final_status]
    status = statuses[min(version, 3) - 1]
    steps = [
        {"TrangThai": "2", "ThoiDiemXuLy": _compact(received), "PhongBanXuLy": "Bộ phận một cửa",
         "NoiDungXuLy": "Tiếp nhận hồ sơ"},
        {"TrangThai": "4", "ThoiDiemXuLy": _compact(received + timedelta(hours=2)), "PhongBanXuLy": "Công chức tư pháp",
         "NoiDungXuLy": "Chuyển xử lý"},
        {"TrangThai": str(final_status), "ThoiDiemXuLy": _compact(due - timedelta(days=i % 4)),
         "PhongBanXuLy": "Lãnh đạo UBND", "NoiDungXuLy": "Đã xử lý xong"},
    ][:version]
    end = due - timedelta(days=i % 4) if status in (9, 10) else None
    updated = received + timedelta(hours=2 * (version - 1))
    return {
        "MaHoSo": f"{prefix}.{unit}-{_compact(day)[2:8]}-{i:07d}",
        "PhienBan": version,
        "NgayCapNhat": _compact(updated),
        "MaTTHC": proc, "TenTTHC": "Đăng ký khai sinh", "MaLinhVuc": "HT", "TenLinhVuc": "Hộ tịch",
        "MaDonVi": unit, "MucDo": level, "KenhThucHien": ("1", "2", "2", "3", "")[i % 5],
        "TrangThaiHoSo": str(status),
        "NgayNopHoSo": _compact(received - timedelta(minutes=15)), "NgayTiepNhan": _compact(received),
        "NgayHenTra": _compact(due),
        "NgayKetThucXuLy": _compact(end) if end else "", "NgayTra": _compact(end) if end and status == 10 else "",
        "NgayTuChoi": "",
        "IdHash": hash_id_number(f"0380{i:08d}", _HASH_KEY), "LoaiDoiTuong": 1,
        "DuocThanhToanTrucTuyen": 1 if i % 7 == 0 else 0, "HoSoCoThanhPhanSoHoa": i % 2,
        "DanhSachGiayToKetQua": [], "QuaTrinhXuLy": steps,
    }


def envelope(payload: dict[str, Any]) -> bytes:
    """The RawRecord JSON a one-stop connector produces for ``payload``."""
    ma, version, unit = payload["MaHoSo"], str(payload["PhienBan"]), payload["MaDonVi"]
    return orjson.dumps({
        "schema_version": 1, "event_id": f"motcua:{ma}:{version}", "source": "motcua",
        "instance": f"motcua-{unit}", "kind": "dossier", "key": ma, "version": version,
        "fetched_at": _FETCHED, "payload": payload,
    })


def dossier_records(
    n_dossiers: int, *, versions: int = 3, start: int = 0, prefix: str = "H56",
) -> Iterator[tuple[bytes, bytes]]:
    """(key, value) of ``versions`` versions per dossier, dossier by dossier, versions in order.

    ``versions=1`` gives one current snapshot per dossier: what a backfill reads from a source
    (superseded versions are no longer served).
    """
    units = _units()
    for i in range(start, start + n_dossiers):
        final = (9, 10, 10, 4)[i % 4]
        for v in range(1, versions + 1) if versions > 1 else (3,):
            p = snapshot(i, v, final, units, prefix)
            yield p["MaHoSo"].encode(), envelope(p)


@dataclass
class Produced:
    """What a producing run did."""

    records: int
    bytes: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.records / max(1e-9, self.seconds)

    def as_dict(self) -> dict[str, Any]:
        return {"records": self.records, "bytes": self.bytes, "seconds": round(self.seconds, 3),
                "records_per_s": round(self.rate, 1), "mib_per_s": round(self.bytes / 1048576 / self.seconds, 2)}


def produce(settings: Settings, topic: str, records: Iterable[tuple[bytes, bytes]]) -> Produced:
    """Produce with the hub's producer settings (kafka-python, acks=all, idempotent), timed to the last ack.

    Larger batches than the connectors' defaults (``linger_ms`` 20, 512 KiB) because a backfill is
    a bulk load; everything else (acks, idempotence, ordering) is the hub's.
    """
    prod = producer(settings.kafka, "bench", linger_ms=20, batch_size=512 * 1024)
    n = size = 0
    t0 = time.perf_counter()
    try:
        for key, value in records:
            prod.send(topic, key=key, value=value)
            n += 1
            size += len(value)
        prod.flush()
        seconds = time.perf_counter() - t0
    finally:
        prod.close()
    return Produced(n, size, seconds)
