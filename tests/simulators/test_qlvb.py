"""QLVB simulator: contract §2 envelope, gaps, duplicates and hostile XML."""

from __future__ import annotations

import unicodedata
import xml.etree.ElementTree as ET  # only to catch ParseError from defusedxml
from datetime import timedelta

import aiohttp
import defusedxml.ElementTree as SafeET
import pytest
from defusedxml import DefusedXmlException

from hub.simulators.faults import Faults
from hub.simulators.qlvb import HOSTILE_KINDS, make_qlvb_app
from hub.simulators.world import World
from tests.simulators.conftest import START

AUTH = {"Authorization": aiohttp.encode_basic_auth("qlvb-user", "qlvb-pass")}
PATH = "/qlvb/api/sukien"


@pytest.fixture
def faults():
    return Faults(seed=5)


@pytest.fixture
def gappy_world(clock):
    world = World(clock, seed=8, qlvb_gap_rate=0.3, qlvb_max_gap=3)
    for i in range(25):
        ma = f"H56.14767-210115-{i:05d}" if i % 5 else None
        world.add_document_event("14767", "KY_SO", START + timedelta(seconds=i),
                                 {"so_ky_hieu": f"{i}/QĐ-UBND", "trich_yeu": "Quyết định cấp giấy khai sinh",
                                  "co_quan_ban_hanh": "UBND phường Điện Biên", "ky_so": "true"}, ma)
    return world


@pytest.fixture
async def client(gappy_world, faults, client_for):
    return await client_for(make_qlvb_app(gappy_world, faults, "qlvb-user", "qlvb-pass"))


async def page(client, tu_id, so_luong):
    resp = await client.get(PATH, params={"tu_id": str(tu_id), "so_luong": str(so_luong)}, headers=AUTH)
    assert resp.status == 200
    assert resp.content_type == "application/xml"
    return SafeET.fromstring(await resp.read())


@pytest.mark.parametrize("headers", [{}, {"Authorization": aiohttp.encode_basic_auth("qlvb-user", "nope")},
                                     {"Authorization": "Basic !!notbase64"}])
async def test_basic_auth_required(client, headers):
    resp = await client.get(PATH, params={"tu_id": "0", "so_luong": "10"}, headers=headers)
    assert resp.status == 401
    assert resp.headers["WWW-Authenticate"].startswith("Basic")


@pytest.mark.parametrize("params", [{"tu_id": "-1"}, {"so_luong": "0"}, {"so_luong": "501"}, {"tu_id": "x"}])
async def test_bad_parameters(client, params):
    assert (await client.get(PATH, params=params, headers=AUTH)).status == 400


async def test_envelope_matches_the_contract(client, gappy_world):
    root = await page(client, 0, 10)
    assert root.tag == "DanhSachSuKien"
    assert root.get("con_nua") == "true"
    events = root.findall("SuKien")
    assert len(events) == 10
    first = events[0]
    assert first.get("loai") == "KY_SO"
    assert first.get("thoi_diem") == "2021-01-15T09:30:00+07:00"
    van_ban = first.find("VanBan")
    assert van_ban is not None
    assert van_ban.get("so_ky_hieu") == "0/QĐ-UBND"
    assert van_ban.get("ma_don_vi") == "14767"
    assert first.find("HoSoLienQuan") is None  # a document of no dossier
    linked = events[1].find("HoSoLienQuan")
    assert linked is not None
    assert linked.get("ma_ho_so") == "H56.14767-210115-00001"
    ids = [int(e.get("id")) for e in events]
    assert ids == sorted(ids)
    assert ids[0] == gappy_world.document_events()[0]["id"]


async def test_gaps_do_not_stall_a_client_that_follows_the_last_id(client, gappy_world):
    expected = [e["id"] for e in gappy_world.document_events()]
    assert expected != list(range(expected[0], expected[0] + len(expected)))  # there are gaps
    seen, tu_id = [], 0
    while True:
        root = await page(client, tu_id, 7)
        seen += [int(e.get("id")) for e in root.findall("SuKien")]
        if root.get("con_nua") != "true":
            break
        tu_id = seen[-1]
    assert seen == expected


async def test_duplicates_across_pages(client, faults):
    faults.update({"p_duplicate": 1.0})
    first = [int(e.get("id")) for e in (await page(client, 0, 5)).findall("SuKien")]
    second = [int(e.get("id")) for e in (await page(client, first[-1], 5)).findall("SuKien")]
    assert second[0] in first  # re-served
    assert second[-1] > first[-1]  # but the client still advances
    assert len(second) <= 5


async def test_hostile_xml_of_every_kind_is_served_and_refused_by_a_safe_parser(client, faults):
    faults.update({"p_hostile_xml": 1.0})
    kinds = set()
    for _ in range(40):
        resp = await client.get(PATH, params={"tu_id": "0", "so_luong": "3"}, headers=AUTH)
        assert resp.status == 200
        raw = await resp.read()
        with pytest.raises((DefusedXmlException, ET.ParseError)):
            SafeET.fromstring(raw, forbid_dtd=True)  # defusedxml allows a bare DTD by default
        text = raw.decode()
        kinds.add("truncated" if "<!DOCTYPE" not in text else
                  "billion_laughs" if "lol9" in text else "external_entity" if "SYSTEM" in text else "dtd")
    assert kinds == set(HOSTILE_KINDS)
    stats = await (await client.get("/_sim/stats")).json()
    assert sum(v for k, v in stats["injected"].items() if k.startswith("hostile_xml")) == 40


async def test_nfd_text(client, faults):
    faults.update({"nfd": True})
    root = await page(client, 0, 1)
    van_ban = root.find("SuKien/VanBan")
    assert van_ban is not None
    text = van_ban.get("co_quan_ban_hanh")
    assert text != "UBND phường Điện Biên"
    assert text is not None
    assert unicodedata.normalize("NFC", text) == "UBND phường Điện Biên"
