"""Connector for the units' electronic one-stop systems (hệ thống một cửa điện tử), contracts.md §1."""

from connectors.motcua.config import MotCuaConfig
from connectors.motcua.connector import MotCuaConnector

__all__ = ["MotCuaConfig", "MotCuaConnector"]
