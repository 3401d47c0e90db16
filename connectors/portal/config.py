"""Configuration of the portal source: OAuth2 client credentials (or access key), options
``start_from`` (ISO-8601 with offset) and ``catalogue_units`` (GSO codes whose published catalogue
is read; empty = no catalogue)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, ClassVar

from pydantic import AfterValidator, Field

from connectors.sdk.config import ConnectorConfig


def _iso_with_offset(value: str) -> str:
    if datetime.fromisoformat(value).tzinfo is None:
        raise ValueError("start_from needs an offset, e.g. 2021-01-01T00:00:00+07:00")
    return value


class PortalConfig(ConnectorConfig):
    """The provincial portal behind the LGSP gateway."""

    allowed_auth: ClassVar[tuple[str, ...]] = ("oauth2", "access_key")

    start_from: Annotated[str, AfterValidator(_iso_with_offset)] = "2000-01-01T00:00:00+07:00"
    catalogue_units: list[Annotated[str, Field(pattern=r"^[0-9A-Za-z._-]{1,20}$")]] = Field(default_factory=list)
    catalogue_refresh_s: Annotated[float, Field(gt=0)] = 3600.0
