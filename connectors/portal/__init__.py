"""Connector for the provincial public service portal, source side (contracts.md §3)."""

from connectors.portal.config import PortalConfig
from connectors.portal.connector import PortalConnector

__all__ = ["PortalConfig", "PortalConnector"]
