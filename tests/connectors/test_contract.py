"""The three connectors pass the contract kit (connectors.sdk.testing) against their fakes."""

from __future__ import annotations

import httpx

from connectors.motcua.connector import MotCuaConnector
from connectors.portal.connector import PortalConnector
from connectors.qlvb.connector import QlvbConnector
from connectors.sdk.testing import ConnectorContract
from hub.config import ConnectorInstance
from tests.connectors.fakes import CCCD, NAME, PHONE, FakeMotCua, FakePortal, FakeQlvb

MOTCUA = ConnectorInstance(
    name="motcua-14767", type="motcua", base_url="http://motcua.test/donvi/14767", unit_code="14767",
    auth={"kind": "api_key", "api_key": "k-14767"},
)
QLVB = ConnectorInstance(name="qlvb", type="qlvb", base_url="http://qlvb.test",
                         auth={"kind": "basic", "username": "dvc-hub", "password": "pw"})


def with_auth(instance: ConnectorInstance, **auth: str) -> ConnectorInstance:
    return ConnectorInstance.model_validate({**instance.model_dump(), "auth": auth})


PORTAL = ConnectorInstance(name="portal", type="portal", base_url="http://portal.test", page_size=3,
                           auth={"kind": "oauth2", "client_id": "dvc-hub", "client_secret": "s3cret"},
                           options={"catalogue_units": ["14767"]})


class TestMotCuaContract(ConnectorContract):
    connector_class = MotCuaConnector
    instance = MOTCUA
    bad_auth_instance = with_auth(MOTCUA, kind="api_key", api_key="wrong")
    forbidden_values = (NAME, CCCD, PHONE)

    def transport(self) -> httpx.AsyncBaseTransport:
        return httpx.MockTransport(FakeMotCua())


class TestQlvbContract(ConnectorContract):
    connector_class = QlvbConnector
    instance = QLVB
    bad_auth_instance = with_auth(QLVB, kind="basic", username="dvc-hub", password="x")
    forbidden_values = (NAME, CCCD)

    def transport(self) -> httpx.AsyncBaseTransport:
        return httpx.MockTransport(FakeQlvb())


class TestPortalContract(ConnectorContract):
    connector_class = PortalConnector
    instance = PORTAL
    bad_auth_instance = with_auth(PORTAL, kind="oauth2", client_id="dvc-hub", client_secret="nope")

    def transport(self) -> httpx.AsyncBaseTransport:
        return httpx.MockTransport(FakePortal())
