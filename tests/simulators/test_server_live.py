"""SimulatorServer (thread and async), the live generator, and the ``simulate`` command."""

from __future__ import annotations

import argparse
import collections
import itertools
import time
from datetime import timedelta

import httpx
import pytest

from hub.commands import simulate
from hub.simulators.clock import SimClock
from hub.simulators.faults import Faults
from hub.simulators.live import LiveGenerator
from hub.simulators.server import SimulatorServer
from hub.simulators.units import load_units
from hub.simulators.world import World
from tests.simulators.conftest import START, dossier

ALLOWED = {  # lifecycle moves the generator may make
    "1": {"2", "3"}, "2": {"4"}, "4": {"5", "9", "7"}, "5": {"4"}, "9": {"10"},
}


@pytest.fixture
def units_csv(tmp_path):
    path = tmp_path / "units.csv"
    path.write_text(
        "ma_dvhc,ten,loai_2020_11_01,loai_2021_02_01,cap,ma_cha\n"
        "380,Thành phố Thanh Hóa,thanh_pho,thanh_pho,HUYEN,38\n"
        "14767,Điện Biên,phuong,phuong,XA,380\n"
        "15850,Thiệu Vân,xa,xa,XA,380\n",
        encoding="utf-8",
    )
    return path


def test_thread_server_serves_all_three(world):
    world.upsert_dossier(dossier("A"))
    with SimulatorServer(world, units={"14767": "k"}) as sims:
        urls = {sims.motcua_url, sims.qlvb_url, sims.portal_url}
        assert len(urls) == 3
        resp = httpx.get(f"{sims.motcua_base_url('14767')}/api/v1/hoso/thaydoi", params={"tu": "20210115000000"},
                         headers={"X-Api-Key": "k"})
        assert [d["MaHoSo"] for d in resp.json()["data"]] == ["A"]
        resp = httpx.get(f"{sims.qlvb_url}/qlvb/api/sukien", auth=(sims.qlvb_username, sims.qlvb_password))
        assert resp.status_code == 200
        client_id, secret = next(iter(sims.portal_clients.items()))
        resp = httpx.post(f"{sims.portal_url}/oauth2/token", auth=(client_id, secret),
                          data={"grant_type": "client_credentials"})
        assert resp.status_code == 200
        assert sims.revoke_portal_tokens() == 1
        assert httpx.post(f"{sims.portal_url}/_sim/faults", json={"p_5xx": 1}).status_code == 200
        assert sims.portal_faults.p_5xx == 1.0
    with pytest.raises(RuntimeError):
        _ = sims.portal_url  # stopped


async def test_async_server_in_the_test_loop(world):
    async with SimulatorServer(world, units={"380": "k"}) as sims:
        async with httpx.AsyncClient() as http:
            resp = await http.get(f"{sims.motcua_base_url('380')}/api/v1/health", headers={"X-Api-Key": "k"})
    assert resp.json()["thoi_gian_may_chu"] == "20210115093000"


def test_a_retrying_client_gets_through_all_on(clock):
    """all_on is moderate: a plain retry loop still reads every dossier of a unit."""
    world = World(clock, seed=3)
    for i in range(300):
        world.upsert_dossier(dossier(f"H{i:03d}"), updated_at=START - timedelta(seconds=i // 7))
    faults = Faults.all_on(seed=3)
    faults.update({"timeout_s": 0.3, "nfd": False})
    with SimulatorServer(world, units={"14767": "k"}, motcua_faults=faults) as sims, httpx.Client(timeout=0.2) as http:
        seen, tu, sau, attempts = [], "20210115000000", None, 0
        while attempts < 500:
            attempts += 1
            params = {"tu": tu, "gioihan": "5"} | ({"sau": sau} if sau else {})
            try:
                resp = http.get(f"{sims.motcua_base_url('14767')}/api/v1/hoso/thaydoi", params=params,
                                headers={"X-Api-Key": "k"})
            except httpx.HTTPError:
                continue
            if resp.status_code != 200 or resp.json()["error_code"] != "0":
                continue
            body = resp.json()
            seen += [d["MaHoSo"] for d in body["data"]]
            if not body["con_nua"]:
                break
            tu, sau = body["data"][-1]["NgayCapNhat"], body["data"][-1]["MaHoSo"]
        stats = httpx.get(f"{sims.motcua_url}/_sim/stats").json()
    assert sorted(seen) == sorted(f"H{i:03d}" for i in range(300))
    assert sum(stats["injected"].values()) > 0  # faults really happened on the way


def test_load_units(units_csv):
    units = load_units(units_csv)
    assert [u.code for u in units] == ["380", "14767", "15850"]
    assert units[1].name == "Điện Biên"
    with pytest.raises(FileNotFoundError, match="units-csv"):
        load_units(units_csv.parent / "missing.csv")


def run_generator(seed, units_csv, steps=400):
    clock = SimClock.manual(START)
    world = World(clock, seed=seed)
    gen = LiveGenerator(world, rate_per_s=0.5, seed=seed, units_csv=units_csv, step_s=(5, 20),
                        faults=Faults(seed=seed, late_visibility=0.3))
    for _ in range(steps):
        gen.step(1.0)
        clock.advance(timedelta(seconds=1))
    return world, gen


def test_live_generator_lifecycles_and_side_systems(units_csv):
    world, gen = run_generator(7, units_csv)
    assert gen.created > 100
    assert {d["MaDonVi"] for d in world.final_dossiers().values()} == {"380", "14767", "15850"}
    for ma, final in world.final_dossiers().items():
        statuses = [v["TrangThaiHoSo"] for v in world.dossier_history(ma)]
        for before, after in itertools.pairwise(statuses):
            assert after in ALLOWED[before], (ma, statuses)
        assert final["SoGiayToChuHoSo"].startswith("038")
        assert len(final["SoGiayToChuHoSo"]) == 12
        assert final["MucDo"] in (3, 4)
        assert final["KenhThucHien"] in ("1", "2", "3")
        assert (statuses[0] == "1") == (final["KenhThucHien"] == "2")  # online dossiers start submitted
    finals = collections.Counter(d["TrangThaiHoSo"] for d in world.final_dossiers().values())
    assert finals["10"] > 0
    assert finals["3"] > 0
    assert finals["7"] > 0
    online = {ma for ma, d in world.final_dossiers().items() if d["KenhThucHien"] == "2"}
    assert {i["ma_ho_so"] for i in world.portal_items()} == online
    assert any(i["thanh_toan"] for i in world.portal_items())
    assert any(i["danh_gia"] for i in world.portal_items())
    signed = {e["ma_ho_so"] for e in world.document_events() if e["loai"] == "KY_SO"}
    with_result = {ma for ma, d in world.final_dossiers().items() if d["DanhSachGiayToKetQua"]}
    assert signed == with_result
    assert signed
    assert any(e["ma_ho_so"] is None for e in world.document_events())
    catalogue = world.catalogue("14767")
    assert catalogue
    assert {r["MucDo"] for r in catalogue} <= {3, 4}


def test_live_generator_is_seeded(units_csv):
    a, _ = run_generator(5, units_csv, steps=120)
    b, _ = run_generator(5, units_csv, steps=120)
    c, _ = run_generator(6, units_csv, steps=120)
    assert a.all_versions() == b.all_versions()
    assert a.all_versions() != c.all_versions()


def test_live_generator_run_forever_stops(units_csv):
    import threading

    world = World(SimClock.live())
    gen = LiveGenerator(world, rate_per_s=50, seed=1, units_csv=units_csv)
    stop = threading.Event()
    thread = threading.Thread(target=gen.run_forever, args=(stop, 0.05))
    thread.start()
    time.sleep(0.3)
    stop.set()
    thread.join(timeout=2)
    assert not thread.is_alive()
    assert gen.created > 0


def test_simulate_command_registers_its_options():
    parser = argparse.ArgumentParser()
    simulate.register(parser.add_subparsers())
    args = parser.parse_args(["simulate", "--motcua-port", "0", "--rate", "2", "--faults", "p_5xx=0.1", "--seed", "4"])
    assert args.func is simulate.run
    assert (args.motcua_port, args.qlvb_port, args.portal_port) == (0, 8102, 8103)
    assert (args.rate, args.seed, args.faults) == (2.0, 4, "p_5xx=0.1")


def test_simulate_command_rejects_a_bad_fault_spec(capsys):
    parser = argparse.ArgumentParser()
    simulate.register(parser.add_subparsers())
    args = parser.parse_args(["simulate", "--faults", "p_nope=1"])
    assert args.func(args) == 2
    assert "p_nope" in capsys.readouterr().err
