"""The examples in the docstrings run and print what they say: documentation that teaches stays true."""

from __future__ import annotations

import doctest
import importlib
import pkgutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("hub", "streams", "schemas", "connectors")


def modules_with_examples() -> list[str]:
    names = []
    for package in PACKAGES:
        for info in pkgutil.walk_packages([str(ROOT / package)], prefix=f"{package}."):
            path = ROOT / (info.name.replace(".", "/") + ("/__init__.py" if info.ispkg else ".py"))
            if path.exists() and ">>> " in path.read_text(encoding="utf-8"):
                names.append(info.name)
    return sorted(names)


MODULES = modules_with_examples()


def test_the_examples_are_found():
    assert "hub.process" in MODULES
    assert "streams.offsets" in MODULES


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS, verbose=False)
    assert result.attempted > 0, f"{name} has '>>> ' in its source but no example doctest could find"
    assert result.failed == 0, f"{result.failed} docstring example(s) of {name} failed (details above)"
