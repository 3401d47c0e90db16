"""One-stop simulator: contract §1 semantics and traps."""

from __future__ import annotations

import unicodedata
from datetime import timedelta

import pytest

from hub.simulators.faults import Faults
from hub.simulators.motcua import make_motcua_app
from tests.simulators.conftest import START, dossier

KEY = {"X-Api-Key": "k-14767"}
BASE = "/donvi/14767/api/v1"


@pytest.fixture
def faults():
    return Faults(seed=1)


@pytest.fixture
async def client(world, faults, client_for):
    return await client_for(make_motcua_app(world, faults, {"14767": "k-14767", "380": "k-380"}))


async def changes(client, **params):
    resp = await client.get(f"{BASE}/hoso/thaydoi", params=params, headers=KEY)
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    assert body["error_code"] == "0"
    return body


@pytest.mark.parametrize("headers", [{}, {"X-Api-Key": "wrong"}, {"X-Api-Key": "k-380"}])
async def test_wrong_or_missing_key_is_401(client, headers):
    resp = await client.get(f"{BASE}/health", headers=headers)
    assert resp.status == 401
    assert (await resp.json())["error_code"] == "401"


async def test_unknown_unit_is_404(client):
    resp = await client.get("/donvi/99999/api/v1/health", headers=KEY)
    assert resp.status == 404


async def test_health_reports_the_source_clock(client, clock):
    clock.advance(timedelta(seconds=42))
    body = await (await client.get(f"{BASE}/health", headers=KEY)).json()
    assert body == {"error_code": "0", "ma_don_vi": "14767", "thoi_gian_may_chu": "20210115093042"}


async def test_keyset_paging_with_ties_uses_sau(client, world, clock):
    # Five dossiers in the same second, two in the next: gioihan=2 pages must walk them all once.
    for ma in ["E", "C", "A", "D", "B"]:
        world.upsert_dossier(dossier(ma))
    world.upsert_dossier(dossier("F"), updated_at=START + timedelta(seconds=1))
    world.upsert_dossier(dossier("G"), updated_at=START + timedelta(seconds=1))
    clock.advance(timedelta(seconds=1))  # a change stamped in the source's future is not visible yet
    seen, tu, sau = [], "20210115000000", None
    while True:
        params = {"tu": tu, "gioihan": "2"} | ({"sau": sau} if sau else {})
        body = await changes(client, **params)
        seen += [d["MaHoSo"] for d in body["data"]]
        if not body["con_nua"]:
            break
        tu, sau = body["data"][-1]["NgayCapNhat"], body["data"][-1]["MaHoSo"]
    assert seen == ["A", "B", "C", "D", "E", "F", "G"]


async def test_tu_alone_is_inclusive_and_sau_is_strict(client, world):
    for ma in ["A", "B", "C"]:
        world.upsert_dossier(dossier(ma))
    without = await changes(client, tu="20210115093000")
    assert [d["MaHoSo"] for d in without["data"]] == ["A", "B", "C"]
    after_b = await changes(client, tu="20210115093000", sau="B")
    assert [d["MaHoSo"] for d in after_b["data"]] == ["C"]
    later = await changes(client, tu="20210115093001")
    assert later["data"] == []
    assert later["con_nua"] is False


async def test_a_cursor_without_tie_breaker_loses_items(client, world):
    # Why `sau` matters: resuming at "strictly after the last second" skips the rest of that second.
    for ma in ["A", "B", "C"]:
        world.upsert_dossier(dossier(ma))
    first = await changes(client, tu="20210115093000", gioihan="2")
    assert first["con_nua"] is True
    naive_next = await changes(client, tu="20210115093001", gioihan="2")
    assert [d["MaHoSo"] for d in first["data"] + naive_next["data"]] == ["A", "B"]


@pytest.mark.parametrize("params", [
    {"tu": "20210115000000", "gioihan": "0"},
    {"tu": "20210115000000", "gioihan": "1001"},
    {"tu": "20210115000000", "gioihan": "abc"},
    {"tu": "2021-01-15"},
    {},
])
async def test_bad_parameters_are_400_with_a_message(client, params):
    resp = await client.get(f"{BASE}/hoso/thaydoi", params=params, headers=KEY)
    assert resp.status == 400
    body = await resp.json()
    assert body["error_code"] == "400"
    assert body["message"]


async def test_default_limit_is_100(client, world):
    for i in range(120):
        world.upsert_dossier(dossier(f"H{i:03d}"))
    body = await changes(client, tu="20210115000000")
    assert len(body["data"]) == 100
    assert body["con_nua"] is True
    body = await changes(client, tu="20210115000000", gioihan="1000")
    assert len(body["data"]) == 120
    assert body["con_nua"] is False


async def test_full_snapshot_of_latest_version_only(client, world, clock):
    world.upsert_dossier(dossier("A"))
    clock.advance(timedelta(seconds=10))
    world.upsert_dossier(dossier("A", status="4"))
    body = await changes(client, tu="20210115000000")
    assert len(body["data"]) == 1
    item = body["data"][0]
    assert (item["PhienBan"], item["TrangThaiHoSo"], item["NgayCapNhat"]) == (2, "4", "20210115093010")
    assert item["ChuHoSo"] == "Nguyễn Văn A"
    assert item["MaTTHC"] == "1.003560.000.00.00.H56"


async def test_late_visibility_hides_a_change_until_the_source_clock_passes(client, world, clock):
    world.upsert_dossier(dossier("A"))
    clock.advance(timedelta(seconds=10))
    world.upsert_dossier(dossier("A", status="4"), visible_delay=timedelta(seconds=100))  # stamped 09:30:10
    world.upsert_dossier(dossier("B"), visible_delay=timedelta(seconds=100))
    clock.advance(timedelta(seconds=50))
    body = await changes(client, tu="20210115093000")
    assert [(d["MaHoSo"], d["PhienBan"]) for d in body["data"]] == [("A", 1)]
    # A client that moved its cursor to "now" (09:31:00) sees nothing, ever, for those changes...
    cursor = "20210115093100"
    clock.advance(timedelta(seconds=60))
    assert (await changes(client, tu=cursor))["data"] == []
    # ...while one that looks back over the late-visibility window finds both.
    body = await changes(client, tu="20210115092900")
    assert [(d["MaHoSo"], d["PhienBan"]) for d in body["data"]] == [("A", 2), ("B", 1)]


async def test_only_the_handling_units_dossiers(client, world):
    world.upsert_dossier(dossier("A", unit="380"))
    world.upsert_dossier(dossier("B", unit="14767"))
    body = await changes(client, tu="20210115000000")
    assert [d["MaHoSo"] for d in body["data"]] == ["B"]


async def test_empty_dates_and_in_person_channel_vary(client, world):
    for i in range(60):
        world.upsert_dossier(dossier(f"H{i:02d}", KenhThucHien="1"))
    data = (await changes(client, tu="20210115000000", gioihan="1000"))["data"]
    assert any("NgayTra" not in d for d in data)
    assert any(d.get("NgayTra") == "" for d in data)
    channels = {repr(d["KenhThucHien"]) if "KenhThucHien" in d else "missing" for d in data}
    assert channels == {"'1'", "''", "None", "missing"}
    # Same version, same serialisation: a re-read is stable.
    again = (await changes(client, tu="20210115000000", gioihan="1000"))["data"]
    assert again == data


async def test_online_channel_is_never_blanked(client, world):
    for i in range(30):
        world.upsert_dossier(dossier(f"H{i:02d}", KenhThucHien="2"))
    data = (await changes(client, tu="20210115000000", gioihan="1000"))["data"]
    assert {d["KenhThucHien"] for d in data} == {"2"}


async def test_nfd_fault_decomposes_vietnamese(client, world, faults):
    world.upsert_dossier(dossier("A"))
    faults.update({"nfd": True})
    text = await (await client.get(f"{BASE}/hoso/thaydoi", params={"tu": "20210115000000"}, headers=KEY)).text()
    item = (await (await client.get(f"{BASE}/hoso/thaydoi", params={"tu": "20210115000000"},
                                    headers=KEY)).json())["data"][0]
    assert item["TenTTHC"] != "Đăng ký khai sinh"
    assert unicodedata.normalize("NFC", item["TenTTHC"]) == "Đăng ký khai sinh"
    assert text != unicodedata.normalize("NFC", text)


async def test_error_body_is_200_with_error_code(client, world, faults):
    world.upsert_dossier(dossier("A"))
    faults.update({"p_error_body": 1.0})
    resp = await client.get(f"{BASE}/hoso/thaydoi", params={"tu": "20210115000000"}, headers=KEY)
    assert resp.status == 200
    assert await resp.json() == {"error_code": "-1", "message": "Lỗi hệ thống"}


async def test_catalogue(client, world):
    rows = [{"MaTTHC": "1.003560.000.00.00.H56", "TenTTHC": "Đăng ký khai sinh", "MucDo": 4, "CoPhi": False,
             "KetQuaBanGiay": True, "HieuLucTu": "20200101000000", "HieuLucDen": ""}]
    world.set_catalogue("14767", rows)
    body = await (await client.get(f"{BASE}/thutuc", headers=KEY)).json()
    assert body == {"error_code": "0", "data": rows}
