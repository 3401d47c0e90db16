"""The unit registry the simulators serve, and the demo credentials of their instances.

The registry is the lead's ``schemas/reference/units-thanhhoa-city-2021.csv`` (GSO codes of Thanh Hóa
City and its 34 wards/communes). The demo credentials match ``hub/defaults/thanhhoa-city.toml`` so
``dvc-hub simulate`` and the default connector configuration fit together with no file at all.

    >>> demo_api_keys(["380", "14767"])
    {'380': 'demo-key-380', '14767': 'demo-key-14767'}
"""

from __future__ import annotations

import contextlib
import csv
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

# The demo values live in hub.config: its one list of published secrets, refused outside the demo profile.
from hub.config import DEMO_PORTAL_SECRET, DEMO_QLVB_PASSWORD, demo_api_key

__all__ = [
    "DEMO_PORTAL_CLIENTS",
    "DEMO_QLVB_PASSWORD",
    "DEMO_QLVB_USERNAME",
    "REGISTRY_FILE",
    "Unit",
    "demo_api_keys",
    "find_registry",
    "load_units",
]

REGISTRY_FILE = "units-thanhhoa-city-2021.csv"
DEMO_QLVB_USERNAME = "dvc-hub"
DEMO_PORTAL_CLIENTS = {"dvc-hub": DEMO_PORTAL_SECRET}


@dataclass(frozen=True)
class Unit:
    """One row of the registry: GSO code, name, ward/commune kind on 2021-02-01, tier (HUYEN/XA)."""

    code: str
    name: str
    kind: str
    cap: str


def demo_api_keys(codes: Iterable[str]) -> dict[str, str]:
    """The demo one-stop API key of each unit code (``demo-key-<code>``)."""
    return {code: demo_api_key(code) for code in codes}


def find_registry(path: Path | str | None = None) -> Path:
    """The registry CSV: ``path`` if given, else ``schemas/reference/`` of the installed hub.

    Raises :class:`FileNotFoundError` saying where it looked.
    """
    candidates: list[Path] = []
    if path is not None:
        candidates.append(Path(path))
    else:
        with contextlib.suppress(ModuleNotFoundError):
            candidates.append(Path(str(resources.files("schemas") / "reference" / REGISTRY_FILE)))
        candidates.append(Path(__file__).resolve().parents[2] / "schemas" / "reference" / REGISTRY_FILE)
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        "unit registry not found; looked at " + ", ".join(str(c) for c in candidates)
        + " (pass the CSV path explicitly, e.g. --units-csv)"
    )


def load_units(path: Path | str | None = None) -> list[Unit]:
    """Read the registry (see :func:`find_registry`), in file order."""
    with find_registry(path).open(encoding="utf-8", newline="") as handle:
        return [
            Unit(row["ma_dvhc"].strip(), row["ten"].strip(), row.get("loai_2021_02_01", "").strip(),
                 row.get("cap", "").strip())
            for row in csv.DictReader(handle)
            if row.get("ma_dvhc", "").strip()
        ]
