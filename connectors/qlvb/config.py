"""Configuration of a QLVB instance: HTTP Basic; option ``start_id`` (read events with a larger id)."""

from __future__ import annotations

from typing import Annotated, ClassVar

from pydantic import Field

from connectors.sdk.config import ConnectorConfig


class QlvbConfig(ConnectorConfig):
    """The document management system."""

    allowed_auth: ClassVar[tuple[str, ...]] = ("basic",)

    start_id: Annotated[int, Field(ge=0)] = 0
