"""Connector for the city's document management software (QLVB), contracts.md §2."""

from connectors.qlvb.config import QlvbConfig
from connectors.qlvb.connector import QlvbConnector

__all__ = ["QlvbConfig", "QlvbConnector"]
