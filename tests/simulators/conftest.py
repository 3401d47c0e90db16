"""Shared fixtures: a manual source clock, a World on it, and aiohttp test clients for the apps."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from hub.simulators.clock import TZ, SimClock
from hub.simulators.world import World

START = datetime(2021, 1, 15, 9, 30, 0, tzinfo=TZ)

ClientFactory = Callable[[web.Application], Awaitable[TestClient]]


@pytest.fixture
def clock() -> SimClock:
    return SimClock.manual(START)


@pytest.fixture
def world(clock: SimClock) -> World:
    return World(clock, seed=1)


@pytest.fixture
async def client_for() -> AsyncIterator[ClientFactory]:
    """``await client_for(app)``: a started aiohttp test client, closed after the test."""
    clients: list[TestClient] = []

    async def make(app: web.Application) -> TestClient:
        client: TestClient = TestClient(TestServer(app))
        await client.start_server()
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.close()


def dossier(ma: str, unit: str = "14767", status: str = "2", **extra: Any) -> dict[str, Any]:
    """A minimal one-stop snapshot (without PhienBan/NgayCapNhat)."""
    return {
        "MaHoSo": ma,
        "MaDonVi": unit,
        "MaTTHC": "1.003560.000.00.00.H56",
        "TenTTHC": "Đăng ký khai sinh",
        "MucDo": 4,
        "KenhThucHien": "2",
        "TrangThaiHoSo": status,
        "NgayNopHoSo": "20210115081500",
        "NgayTiepNhan": "20210115082010",
        "NgayHenTra": "20210118170000",
        "NgayKetThucXuLy": "",
        "NgayTra": "",
        "NgayTuChoi": "",
        "ChuHoSo": "Nguyễn Văn A",
        "SoGiayToChuHoSo": "038090001234",
        "SoDienThoai": "0912345678",
        "DanhSachGiayToKetQua": [],
        "QuaTrinhXuLy": [],
        **extra,
    }
