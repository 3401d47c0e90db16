"""Configuration of a one-stop (``motcua``) instance: one per unit, API key auth.

Options (``[connectors.options]``): ``start_from`` (``yyyyMMddHHmmss``, where a brand-new instance
starts), ``catalogue`` (read the procedure catalogue, default true), ``catalogue_refresh_s``
(default 3600), ``lookback_every_s`` (how often a cycle re-reads the look-back window, default 15;
between those, cycles only read forward from the cursor, so a busy source is not re-read in full
every poll; late-visible changes then arrive at most this much later). The look-back window is
the instance's ``lookback_s`` and must cover the source's late-visibility window (120 s in the
contract).
"""

from __future__ import annotations

import re
from typing import Annotated, ClassVar, Self

from pydantic import Field, model_validator

from connectors.sdk.config import ConnectorConfig

#: The contract's worst case for a change to become visible after its NgayCapNhat.
LATE_VISIBILITY_S = 120


class MotCuaConfig(ConnectorConfig):
    """A one-stop instance."""

    allowed_auth: ClassVar[tuple[str, ...]] = ("api_key",)
    requires_unit_code: ClassVar[bool] = True

    start_from: Annotated[str, Field(pattern=r"^\d{14}$")] = "20000101000000"
    catalogue: bool = True
    catalogue_refresh_s: Annotated[float, Field(gt=0)] = 3600.0
    lookback_every_s: Annotated[float, Field(ge=0)] = 15.0

    @model_validator(mode="after")
    def _lookback_covers_late_visibility(self) -> Self:
        if self.instance.lookback_s < LATE_VISIBILITY_S:
            raise ValueError(
                f"lookback_s {self.instance.lookback_s} is shorter than the one-stop systems' late-visibility "
                f"window ({LATE_VISIBILITY_S} s): changes committed late would be missed; use 180"
            )
        if not re.fullmatch(r"[0-9A-Za-z._-]{1,20}", self.instance.unit_code or ""):
            raise ValueError("unit_code must be the unit's GSO code, e.g. '14767'")
        return self
