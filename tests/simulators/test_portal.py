"""Portal simulator: OAuth2, LGSP envelope, offset paging trap, target semantics, limits."""

from __future__ import annotations

import copy
from datetime import timedelta

import aiohttp
import pytest

from hub.simulators.faults import Faults
from hub.simulators.portal import make_portal_app

BASIC = {"Authorization": aiohttp.encode_basic_auth("hub", "s3cret")}
FORM = {"grant_type": "client_credentials"}


@pytest.fixture
def faults():
    return Faults(seed=6)


@pytest.fixture
async def client(world, faults, client_for):
    return await client_for(make_portal_app(world, faults, {"hub": "s3cret"}, token_ttl=600))


async def token(client) -> dict[str, str]:
    resp = await client.post("/oauth2/token", data=FORM, headers=BASIC)
    assert resp.status == 200
    body = await resp.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] > 0
    return {"Authorization": f"Bearer {body['access_token']}"}


@pytest.fixture
async def auth(client):
    return await token(client)


def national(ma: str, status: str = "4", **extra):
    return {
        "MaHoSo": ma, "MaTTHC": "1.003560.000.00.00.H56", "MaDonVi": "14767", "MucDo": 4, "KenhThucHien": "2",
        "TrangThaiHoSo": status, "NgayNopHoSo": "20210115081500", "NgayTiepNhan": "20210115082010",
        "NgayHenTra": "20210118170000", "NgayKetThucXuLy": "", "NgayTra": "",
        "QuaTrinhXuLy": [{"TrangThai": "2", "ThoiDiemXuLy": "20210115082010", "PhongBanXuLy": "Một cửa",
                          "NoiDungXuLy": "Tiếp nhận"}],
        **extra,
    }


async def push(client, auth, dossiers, updating="False", **headers):
    resp = await client.post("/api/v1/dongbo/hoso", json={"isUpdating": updating, "data": dossiers},
                             headers={**auth, **headers})
    assert resp.status == 200
    body = await resp.json()
    assert body["code"] == 200
    assert body["response"]["error_code"] == body["error_code"]
    return body


# ---------------------------------------------------------------------- auth


@pytest.mark.parametrize("headers", [{}, {"Authorization": aiohttp.encode_basic_auth("hub", "wrong")},
                                     {"Authorization": aiohttp.encode_basic_auth("other", "s3cret")}])
async def test_bad_client_credentials_are_401(client, headers):
    resp = await client.post("/oauth2/token", data=FORM, headers=headers)
    assert resp.status == 401


async def test_wrong_grant_type_is_400(client):
    resp = await client.post("/oauth2/token", data={"grant_type": "password"}, headers=BASIC)
    assert resp.status == 400


async def test_bearer_required(client):
    for headers in ({}, {"Authorization": "Bearer made-up"}, BASIC):
        resp = await client.get("/api/v1/thutuc", params={"ma_don_vi": "14767"}, headers=headers)
        assert resp.status == 401
        assert (await resp.json())["code"] == 401


async def test_token_expires_on_the_source_clock(client, auth, clock):
    resp = await client.post("/oauth2/token", data=FORM, headers=BASIC)
    assert (await resp.json())["expires_in"] == 600
    assert (await client.get("/api/v1/thutuc", params={"ma_don_vi": "1"}, headers=auth)).status == 200
    clock.advance(timedelta(seconds=600))
    assert (await client.get("/api/v1/thutuc", params={"ma_don_vi": "1"}, headers=auth)).status == 401


async def test_revocation_on_demand_then_a_new_token_works(client, auth):
    assert (await client.post("/_sim/revoke")).status == 200
    resp = await client.get("/api/v1/thutuc", params={"ma_don_vi": "1"}, headers=auth)
    assert resp.status == 401
    assert 'error="invalid_token"' in resp.headers["WWW-Authenticate"]
    fresh = await token(client)
    assert (await client.get("/api/v1/thutuc", params={"ma_don_vi": "1"}, headers=fresh)).status == 200


async def test_revocation_every_n_requests(client, auth, faults):
    faults.update({"revoke_every": 3})
    statuses = [(await client.get("/api/v1/thutuc", params={"ma_don_vi": "1"}, headers=auth)).status
                for _ in range(4)]
    assert statuses == [200, 200, 401, 401]  # revoked for good, not just one refusal
    fresh = await token(client)
    assert (await client.get("/api/v1/thutuc", params={"ma_don_vi": "1"}, headers=fresh)).status == 200


# ---------------------------------------------------------------------- source side


async def fill(world, clock, n):
    for i in range(n):
        world.upsert_portal_item({
            "ma_ho_so": f"H56.14767-210115-{i:05d}", "ma_tthc": "1.003560.000.00.00.H56", "ma_don_vi": "14767",
            "muc_do": 4, "thoi_diem_nop": "2021-01-15T08:15:00+07:00", "trang_thai": "DA_NOP",
            "thanh_toan": None, "danh_gia": None,
        })
        clock.advance(timedelta(seconds=1))


async def read_page(client, auth, tu, trang, size):
    resp = await client.get("/api/v1/hoso-truc-tuyen", params={"tu": tu, "trang": trang, "kich_thuoc": size},
                            headers=auth)
    assert resp.status == 200
    body = await resp.json()
    assert body["code"] == 200
    assert body["status"] == "OK"
    assert body["correlationId"]
    return body["response"]


async def test_online_items_envelope_order_and_paging(client, auth, world, clock):
    await fill(world, clock, 7)
    first = await read_page(client, auth, "2021-01-15T09:30:00+07:00", 1, 5)
    assert first["tong_so"] == 7
    assert first["trang"] == 1
    stamps = [i["cap_nhat_luc"] for i in first["du_lieu"]]
    assert stamps == sorted(stamps)
    second = await read_page(client, auth, "2021-01-15T09:30:00+07:00", 2, 5)
    assert len(second["du_lieu"]) == 2
    later = await read_page(client, auth, "2021-01-15T09:30:05+07:00", 1, 5)
    assert later["tong_so"] == 2  # tu is inclusive


@pytest.mark.parametrize("params", [{"tu": "2021-01-15T09:30:00"}, {"tu": "yesterday"}, {},
                                    {"tu": "2021-01-15T09:30:00+07:00", "kich_thuoc": "201"},
                                    {"tu": "2021-01-15T09:30:00+07:00", "trang": "0"}])
async def test_bad_source_parameters_are_400(client, auth, params):
    resp = await client.get("/api/v1/hoso-truc-tuyen", params=params, headers=auth)
    assert resp.status == 400


async def test_unencoded_plus_in_tu_is_refused_with_a_hint(client, auth):
    resp = await client.get("/api/v1/hoso-truc-tuyen?tu=2021-01-15T09:30:00+07:00", headers=auth)
    assert resp.status == 400
    assert "%2B" in (await resp.json())["message"]


async def test_move_during_paging_makes_an_offset_client_miss_an_item(client, auth, world, clock, faults):
    await fill(world, clock, 10)
    everything = {i["ma_ho_so"] for i in world.portal_items()}
    faults.update({"p_move": 1.0})
    tu = "2021-01-15T09:30:00+07:00"
    # The naive client: page 1, page 2, ... of the same query.
    naive, trang = [], 1
    while True:
        page = await read_page(client, auth, tu, trang, 4)
        naive += [i["ma_ho_so"] for i in page["du_lieu"]]
        if trang * 4 >= page["tong_so"]:
            break
        trang += 1
    assert everything - set(naive)  # at least one item silently skipped
    assert len(naive) == 10  # ...while the count looks complete (the moved item came twice)
    # The re-reading client: restart from the last cap_nhat_luc seen (inclusive), page 1 only.
    careful, cursor = set(), tu
    for _ in range(20):
        page = await read_page(client, auth, cursor, 1, 4)
        items = page["du_lieu"]
        careful |= {i["ma_ho_so"] for i in items}
        if page["tong_so"] <= len(items):
            break
        cursor = items[-1]["cap_nhat_luc"]
    assert careful == everything


async def test_portal_catalogue(client, auth, world):
    rows = [{"MaTTHC": "1.003560.000.00.00.H56", "TenTTHC": "Đăng ký khai sinh", "MucDo": 4}]
    world.set_catalogue("14767", rows)
    resp = await client.get("/api/v1/thutuc", params={"ma_don_vi": "14767"}, headers=auth)
    assert (await resp.json())["response"] == {"ma_don_vi": "14767", "tong_so": 1, "du_lieu": rows}
    assert (await client.get("/api/v1/thutuc", headers=auth)).status == 400


async def test_error_body_on_the_portal(client, auth, faults):
    faults.update({"p_error_body": 1.0})
    resp = await client.get("/api/v1/thutuc", params={"ma_don_vi": "14767"}, headers=auth)
    assert resp.status == 200
    body = await resp.json()
    assert body["code"] != 200
    assert body["error_code"] == "-1"
    assert body["response"]["message"] == "Lỗi hệ thống"


# ---------------------------------------------------------------------- target: dossiers


async def test_create_then_exists_then_update(client, auth, world):
    assert (await push(client, auth, [national("A")]))["error_code"] == "0"
    again = await push(client, auth, [national("A", status="9"), national("B")])
    assert again["error_code"] in ("3", "-3")
    assert "A" in again["message"]
    assert world.portal_dossier("B") is None  # the whole batch was refused
    assert world.portal_dossier("A")["snapshot"]["TrangThaiHoSo"] == "4"
    updated = await push(client, auth, [national("A", status="9"), national("B")], updating="True")
    assert updated["error_code"] == "0"
    assert world.portal_dossier("A")["writes"] == 2
    assert world.portal_dossier("A")["snapshot"]["TrangThaiHoSo"] == "9"
    assert world.portal_dossier("B")["writes"] == 1  # "True" creates what the portal lacks


async def test_batch_of_more_than_100_is_refused(client, auth, world):
    body = await push(client, auth, [national(f"H{i}") for i in range(101)])
    assert body["error_code"] not in ("0", "3", "-3")
    assert "100" in body["message"]
    assert world.portal_dossiers == {}
    assert (await push(client, auth, [national(f"H{i}") for i in range(100)]))["error_code"] == "0"


@pytest.mark.parametrize("bad", [
    {"TrangThaiHoSo": "11"}, {"TrangThaiHoSo": 4}, {"NgayTiepNhan": "2021-01-15 08:20"},
    {"NgayHenTra": "20211315170000"}, {"MaTTHC": ""},
    {"QuaTrinhXuLy": [{"TrangThai": "4", "ThoiDiemXuLy": "2021-01-15"}]},
])
async def test_national_format_is_validated_for_the_whole_batch(client, auth, world, bad):
    body = await push(client, auth, [national("GOOD"), {**national("BAD"), **bad}])
    assert body["error_code"] not in ("0", "3", "-3")
    assert "BAD" in body["message"]
    assert world.portal_dossiers == {}


@pytest.mark.parametrize("field", ["ChuHoSo", "SoDienThoai", "SoGiayToChuHoSo"])
async def test_personal_data_is_refused(client, auth, world, field):
    body = await push(client, auth, [national("A", **{field: "Nguyễn Văn A" if field == "ChuHoSo" else "0912"})])
    assert body["error_code"] not in ("0", "3", "-3")
    assert field in body["message"]
    assert world.portal_dossiers == {}


async def test_id_number_accepted_only_when_required(world, client_for):
    client = await client_for(make_portal_app(world, Faults(), {"hub": "s3cret"}, require_id_number=True))
    auth = await token(client)
    assert (await push(client, auth, [national("A", SoGiayToChuHoSo="038090001234")]))["error_code"] == "0"
    assert (await push(client, auth, [national("B", SoDienThoai="0912345678")]))["error_code"] == "4"


async def test_not_json_or_wrong_shape(client, auth):
    resp = await client.post("/api/v1/dongbo/hoso", data=b"{not json", headers=auth)
    assert (await resp.json())["error_code"] == "1"
    for body in ({"isUpdating": False, "data": [national("A")]}, {"isUpdating": "False", "data": []}, []):
        resp = await client.post("/api/v1/dongbo/hoso", json=body, headers=auth)
        assert (await resp.json())["error_code"] == "1"


async def test_idempotency_key_replays_the_first_answer(client, auth, world, clock):
    first = await push(client, auth, [national("A")], **{"Idempotency-Key": "k1"})
    resp = await client.post("/api/v1/dongbo/hoso", json={"isUpdating": "False", "data": [national("A")]},
                             headers={**auth, "Idempotency-Key": "k1"})
    assert resp.headers.get("Idempotent-Replayed") == "true"
    assert (await resp.json())["error_code"] == first["error_code"] == "0"  # not "3": not applied again
    assert world.portal_dossier("A")["writes"] == 1
    conflict = await client.post("/api/v1/dongbo/hoso", json={"isUpdating": "True", "data": [national("A")]},
                                 headers={**auth, "Idempotency-Key": "k1"})
    assert conflict.status == 422
    clock.advance(timedelta(hours=24))  # the key is forgotten after 24 h
    late = await push(client, await token(client), [national("A")], **{"Idempotency-Key": "k1"})
    assert late["error_code"] in ("3", "-3")


async def test_lost_answer_then_settled_by_replay_and_lookup(client, auth, world, faults):
    faults.update({"p_reset_after_store": 1.0})
    with pytest.raises(aiohttp.ClientError):
        await client.post("/api/v1/dongbo/hoso", json={"isUpdating": "True", "data": [national("A")]},
                          headers={**auth, "Idempotency-Key": "push-1"})
    assert world.portal_dossier("A")["writes"] == 1  # stored although the client saw nothing
    faults.update({"p_reset_after_store": 0.0})
    retry = await push(client, auth, [national("A")], updating="True", **{"Idempotency-Key": "push-1"})
    assert retry["error_code"] == "0"
    assert world.portal_dossier("A")["writes"] == 1  # exactly one effective copy
    found = await client.get("/api/v1/dongbo/hoso/A", headers=auth)
    body = await found.json()
    assert body["response"]["data"]["MaHoSo"] == "A"
    assert body["response"]["so_lan_ghi"] == 1
    missing = await client.get("/api/v1/dongbo/hoso/NOPE", headers=auth)
    assert missing.status == 404
    assert (await missing.json())["code"] == 404


async def test_request_log_keeps_bodies_without_secrets(client, auth, world):
    await push(client, auth, [national("A")])
    entries = world.requests(app="portal", path_prefix="/api/v1/dongbo/hoso")
    assert entries[-1]["body"]["data"][0]["MaHoSo"] == "A"
    assert entries[-1]["answer"]["error_code"] == "0"
    token_entry = world.requests(app="portal", path_prefix="/oauth2/token")[-1]
    assert "authorization" not in {k.lower() for k in token_entry["headers"]}
    assert "access_token" in token_entry["answer"]  # the log is for tests; it never leaves the simulator


# ---------------------------------------------------------------------- target: progress and statistics


async def test_progress_rows_and_dedup_view(client, auth, world):
    row = {"MaHoSo": "A", "TrangThai": "4", "ThoiDiemXuLy": "20210115093012", "PhongBanXuLy": "Tư pháp",
           "NoiDungXuLy": "Chuyển xử lý"}
    for _ in range(2):
        resp = await client.post("/api/v1/dongbo/tiendo", json={"data": [row]}, headers=auth)
        assert (await resp.json())["error_code"] == "0"
    assert len(world.portal_progress) == 2
    assert world.portal_progress_rows(dedup=True) == [row]
    bad = await client.post("/api/v1/dongbo/tiendo", json={"data": [{**row, "TrangThai": "0"}]}, headers=auth)
    assert (await bad.json())["error_code"] == "1"
    assert len(world.portal_progress) == 2


STATS = {
    "ky": "2021-Q1", "ma_don_vi": "14767", "cap": "XA", "thoi_diem_tong_hop": "2021-04-01T00:05:00+07:00",
    "theo_muc_do": [{"muc_do": 3, "tiep_nhan": 410, "tiep_nhan_truc_tuyen": 233, "da_giai_quyet": 390,
                     "dung_han": 371, "truoc_han": 120, "qua_han": 19, "dang_xu_ly": 20, "qua_han_dang_xu_ly": 2}],
    "thu_tuc": {"muc_do_3": 9, "muc_do_4": 32, "khong_phat_sinh_ho_so": 5},
}


async def put_stats(client, auth, body, ky="2021-Q1", unit="14767"):
    resp = await client.put(f"/api/v1/thongke/dvctt/{ky}/{unit}", json=body, headers=auth)
    assert resp.status == 200
    return await resp.json()


async def test_stats_latest_put_replaces(client, auth, world):
    assert (await put_stats(client, auth, STATS))["error_code"] == "0"
    newer = copy.deepcopy(STATS)
    newer["theo_muc_do"][0].update(tiep_nhan=411, tiep_nhan_truc_tuyen=234)
    assert (await put_stats(client, auth, newer))["error_code"] == "0"
    assert world.portal_stats[("2021-Q1", "14767")]["theo_muc_do"][0]["tiep_nhan"] == 411
    assert len(world.portal_stats) == 1
    assert len(world.portal_stats_history) == 2


@pytest.mark.parametrize("mutate", [
    lambda b: b["theo_muc_do"][0].update(da_giai_quyet=391),  # != dung_han + qua_han
    lambda b: b["theo_muc_do"][0].update(truoc_han=400),  # early part larger than the whole
    lambda b: b["theo_muc_do"][0].update(tiep_nhan_truc_tuyen=500),
    lambda b: b["theo_muc_do"][0].update(qua_han_dang_xu_ly=21),
    lambda b: b["theo_muc_do"][0].update(dang_xu_ly=-1),
    lambda b: b["theo_muc_do"][0].update(muc_do=5),
    lambda b: b.update(ky="2021-Q2"),
    lambda b: b.update(ma_don_vi="380"),
    lambda b: b.update(cap="PHUONG"),
    lambda b: b.update(thoi_diem_tong_hop="2021-04-01 00:05"),
    lambda b: b.pop("thu_tuc"),
])
async def test_stats_body_is_validated(client, auth, world, mutate):
    body = copy.deepcopy(STATS)
    mutate(body)
    assert (await put_stats(client, auth, body))["error_code"] != "0"
    assert world.portal_stats == {}


async def test_stats_bad_period_in_path(client, auth):
    body = {**STATS, "ky": "2021-13"}
    assert (await put_stats(client, auth, body, ky="2021-13"))["error_code"] != "0"


# ---------------------------------------------------------------------- limits


async def test_rate_limit_429_with_retry_after(world, client_for):
    client = await client_for(make_portal_app(world, Faults(), {"hub": "s3cret"}, rate_limit_per_s=5))
    auth = await token(client)  # the token call counts too
    statuses = []
    for _ in range(8):
        resp = await client.get("/api/v1/thutuc", params={"ma_don_vi": "1"}, headers=auth)
        statuses.append(resp.status)
        if resp.status == 429:
            assert int(resp.headers["Retry-After"]) >= 1
    assert statuses[:4] == [200] * 4
    assert 429 in statuses
