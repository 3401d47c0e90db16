"""Export the JSON Schema of every canonical model: ``python -m schemas.export docs/schemas``.

The files are committed (``docs/schemas/<Model>.json``) so that teams outside the hub can read the
canonical formats without Python; ``tests/domain/test_export.py`` fails when they are out of date.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from pydantic import BaseModel

from schemas.events import CatalogueEntry, DocumentEvent, DossierEvent, PortalEvent
from schemas.figures import OutboxDossier, OutboxStats, UnitFigures
from schemas.raw import RawRecord

__all__ = ["MODELS", "export", "main", "render_schema"]

MODELS: tuple[type[BaseModel], ...] = (
    DossierEvent,
    DocumentEvent,
    PortalEvent,
    CatalogueEntry,
    RawRecord,
    UnitFigures,
    OutboxDossier,
    OutboxStats,
)


def render_schema(model: type[BaseModel]) -> str:
    """The model's JSON Schema (serialisation mode: what appears on a topic), stable text."""
    schema = model.model_json_schema(mode="serialization")
    return json.dumps(schema, ensure_ascii=False, indent=2, sort_keys=True) + "\n"


def export(directory: Path) -> list[Path]:
    """Write one ``<Model>.json`` per model into ``directory``; the paths written."""
    directory.mkdir(parents=True, exist_ok=True)
    out = []
    for model in MODELS:
        path = directory / f"{model.__name__}.json"
        path.write_text(render_schema(model), encoding="utf-8")
        out.append(path)
    return out


def main(argv: list[str] | None = None) -> int:
    """Command line: the target directory is the only argument."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        sys.stderr.write("usage: python -m schemas.export <directory>   (e.g. docs/schemas)\n")
        return 2
    for path in export(Path(args[0])):
        sys.stdout.write(f"{path}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
