"""``dvc-hub connectors new NAME``: render a new connector package that passes the contract kit.

The templates ship inside the hub (``connectors/sdk/templates/scaffold/*.tmpl``, ``string.Template``
syntax). A file ``package.X.tmpl`` lands in the package folder as ``X``, ``tests.X.tmpl`` in ``tests/``,
anything else at the top::

    >>> import tempfile, pathlib
    >>> out = render("acme_motcua", pathlib.Path(tempfile.mkdtemp()))
    >>> sorted(p.name for p in out.rglob("*.py"))
    ['__init__.py', '__init__.py', 'config.py', 'connector.py', 'fake_source.py', 'test_connector.py']
"""

from __future__ import annotations

import re
from pathlib import Path
from string import Template

__all__ = ["NAME_RE", "render"]

TEMPLATES = Path(__file__).parent / "templates" / "scaffold"
NAME_RE = re.compile(r"^[a-z][a-z0-9_]{1,40}$")


def render(name: str, directory: Path, *, title: str | None = None) -> Path:
    """Write the package ``directory/name`` and return its path; refuses to overwrite."""
    if not NAME_RE.fullmatch(name):
        raise ValueError(f"connector name {name!r} must be a lowercase Python identifier, e.g. acme_motcua")
    root = directory / name
    if root.exists():
        raise FileExistsError(f"{root} already exists; choose another name or --dir")
    class_name = "".join(part.capitalize() for part in name.split("_"))
    values = {
        "name": name,
        "dist_name": f"dvc-hub-{name.replace('_', '-')}",
        "class_name": class_name,
        "title": title or f"{class_name} one-stop system",
        "instance_name": name.replace("_", "-") + "-test",
    }
    for template in sorted(TEMPLATES.glob("*.tmpl")):
        stem = template.name.removesuffix(".tmpl")
        folder, _, filename = stem.partition(".")
        if folder == "package":
            target = root / name / filename
        elif folder == "tests":
            target = root / "tests" / filename
        else:
            target = root / stem
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(Template(template.read_text(encoding="utf-8")).substitute(values), encoding="utf-8")
    return root
