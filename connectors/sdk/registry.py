"""Connector types are discovered through the ``dvc_hub.connectors`` entry-point group.

A package ships a connector by declaring, in its ``pyproject.toml``::

    [project.entry-points."dvc_hub.connectors"]
    acme_motcua = "acme_motcua.connector:AcmeMotcuaConnector"

and, once installed in the hub's environment, ``dvc-hub connectors list`` shows it and an
instance with ``type = "acme_motcua"`` runs it. The entry-point name is the type name; it must
equal the class's ``type``.

    >>> sorted(n for n in entry_points() if n in ("motcua", "qlvb", "portal"))
    ['motcua', 'portal', 'qlvb']
    >>> load_connector("motcua").__name__
    'MotCuaConnector'
"""

from __future__ import annotations

from importlib.metadata import EntryPoint
from importlib.metadata import entry_points as _entry_points

from connectors.sdk.base import Connector
from hub.config import ConfigError

__all__ = ["ENTRY_POINT_GROUP", "ConnectorLoadError", "entry_points", "load_connector", "load_entry_point"]

ENTRY_POINT_GROUP = "dvc_hub.connectors"


class ConnectorLoadError(ConfigError):
    """A connector type is unknown or its entry point does not lead to a Connector class."""


def entry_points() -> dict[str, EntryPoint]:
    """Installed connector types by name (read fresh each call, so new installs show up)."""
    return {ep.name: ep for ep in _entry_points(group=ENTRY_POINT_GROUP)}


def load_entry_point(ep: EntryPoint) -> type[Connector]:
    """Import the class an entry point names and check it is a proper connector."""
    try:
        obj = ep.load()
    except (ImportError, AttributeError) as exc:
        raise ConnectorLoadError(f"connector type {ep.name!r}: cannot import {ep.value} ({exc}); "
                                 "is its package installed in the hub's environment?") from None
    if not (isinstance(obj, type) and issubclass(obj, Connector)):
        raise ConnectorLoadError(f"connector type {ep.name!r}: {ep.value} is not a connectors.sdk.Connector subclass")
    if getattr(obj, "type", None) != ep.name:
        raise ConnectorLoadError(f"connector type {ep.name!r}: class {obj.__name__} declares type "
                                 f"{getattr(obj, 'type', None)!r}; the entry-point name and the type must match")
    if not obj.streams:
        raise ConnectorLoadError(f"connector type {ep.name!r}: {obj.__name__} declares no streams")
    return obj


def load_connector(type_name: str) -> type[Connector]:
    """The connector class of ``type_name``; the error lists the installed types."""
    found = entry_points()
    if type_name not in found:
        known = ", ".join(sorted(found)) or "none"
        raise ConnectorLoadError(f"unknown connector type {type_name!r}; installed types: {known}. "
                                 "Install the package that provides it (pip install ...) or fix the instance's type")
    return load_entry_point(found[type_name])
