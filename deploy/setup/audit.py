"""Audit every package of the lock file against PyPI's vulnerability data (``make audit``, run by CI).

1. pip-audit, with its default PyPI service (``/pypi/<name>/<version>/json``), reads the hashed lock
   without pip (``--disable-pip``): no environment is built, and exactly the locked versions are checked.
2. A package pip-audit had to skip is checked against its project JSON (``/pypi/<name>/json``), whose
   ``vulnerabilities`` are those of the project's newest release. That is exact for a package locked at
   its newest release; one locked behind it cannot be audited that way and is listed as unaudited.
   Why: a PyPI copy may serve the project JSON but not the per-release one (the one this project's
   machines reach answers 404 for every release), and OSV's own service is not always reachable.
3. Accepted advisories are in ``deploy/setup/audit-ignore.toml``: one ``[[ignore]]`` table per advisory
   with ``id`` (matched against each advisory's id and aliases), ``package`` and ``reason``, and
   optionally ``until`` (a date after which the acceptance lapses and the advisory fails the audit again).

Exit status: 0 nothing found; 1 a vulnerability that is not accepted (the CI fails); 2 the ignore file is
invalid or pip-audit could not run. Unaudited packages are listed and fail the audit only with
``--require-complete`` (or ``AUDIT_REQUIRE_COMPLETE=1``), for machines that reach a complete service.

Example::

    $ .venv/bin/python deploy/setup/audit.py            # what `make audit` runs
    UNAUDITED  click: locked 8.3.3, newest 8.5.1: PyPI's per-release data is unavailable here and ...
    audited 84 of 94 locked packages (0 by pip-audit, 84 from PyPI's project data): no known vulnerability;
    10 unaudited
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import subprocess
import sys
import tempfile
import tomllib
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_LOCK = ROOT / "requirements.lock"
DEFAULT_IGNORE = Path(__file__).resolve().parent / "audit-ignore.toml"
PYPI_PROJECT_JSON = "https://pypi.org/pypi/{name}/json"

_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)", re.MULTILINE)


def canonical(name: str) -> str:
    """PEP 503 normalised name: ``Foo_Bar`` and ``foo.bar`` are the same project."""
    return re.sub(r"[-_.]+", "-", name).lower()


def locked_pins(lock_text: str) -> dict[str, str]:
    """``{canonical name: version}`` of every ``name==version`` line of a requirements lock file."""
    return {canonical(name): version for name, version in _PIN.findall(lock_text)}


@dataclass(frozen=True)
class Advisory:
    """One known vulnerability of one locked package."""

    package: str
    version: str
    id: str
    aliases: tuple[str, ...] = ()
    fix_versions: tuple[str, ...] = ()
    description: str = ""

    @property
    def ids(self) -> set[str]:
        return {self.id, *self.aliases}


@dataclass(frozen=True)
class Accepted:
    """One entry of the ignore file: an advisory the project accepts, and why."""

    id: str
    package: str
    reason: str
    until: dt.date | None = None

    def covers(self, advisory: Advisory, today: dt.date) -> bool:
        live = self.until is None or today <= self.until
        return live and canonical(self.package) == advisory.package and self.id in advisory.ids


class IgnoreFileError(ValueError):
    """The ignore file is not what the audit accepts; the message says which entry and why."""


def load_ignores(text: str, source: str = "audit-ignore.toml") -> list[Accepted]:
    """Parse the ignore file; every entry must name its advisory and package and give a reason."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise IgnoreFileError(f"{source} is not valid TOML: {exc}") from exc
    unknown = set(data) - {"ignore"}
    if unknown:
        raise IgnoreFileError(f"{source}: unknown top-level keys {sorted(unknown)}; only [[ignore]] tables go here")
    entries = data.get("ignore", [])
    if not isinstance(entries, list):
        raise IgnoreFileError(f"{source}: `ignore` must be an array of tables ([[ignore]])")
    accepted = []
    for number, entry in enumerate(entries, start=1):
        where = f"{source}, [[ignore]] #{number}"
        if not isinstance(entry, dict):
            raise IgnoreFileError(f"{where}: not a table")
        extra = set(entry) - {"id", "package", "reason", "until"}
        if extra:
            raise IgnoreFileError(f"{where}: unknown keys {sorted(extra)} (allowed: id, package, reason, until)")
        for key in ("id", "package", "reason"):
            value = entry.get(key)
            if not isinstance(value, str) or not value.strip():
                raise IgnoreFileError(
                    f"{where}: `{key}` is missing or empty; every accepted advisory needs its id, its package "
                    "and the reason it is accepted"
                )
        until = entry.get("until")
        if until is not None and (not isinstance(until, dt.date) or isinstance(until, dt.datetime)):
            raise IgnoreFileError(f"{where}: `until` must be a TOML date, e.g. until = 2027-01-31")
        accepted.append(Accepted(entry["id"].strip(), entry["package"].strip(), entry["reason"].strip(), until))
    return accepted


@dataclass
class Report:
    """What the audit found, package by package."""

    pins: dict[str, str]
    by_pip_audit: set[str] = field(default_factory=set)
    by_project_json: set[str] = field(default_factory=set)
    unaudited: dict[str, str] = field(default_factory=dict)  # package -> why
    advisories: list[Advisory] = field(default_factory=list)

    def add(self, advisory: Advisory) -> None:
        """Record ``advisory`` unless it is already there under another of its ids (PYSEC-, GHSA-, CVE-)."""
        if not any(a.package == advisory.package and a.ids & advisory.ids for a in self.advisories):
            self.advisories.append(advisory)

    def split(self, accepted: Iterable[Accepted], today: dt.date) -> tuple[list[Advisory], list[Advisory]]:
        """(advisories that fail the audit, advisories accepted by the ignore file)."""
        accepted = list(accepted)
        failing: list[Advisory] = []
        ignored: list[Advisory] = []
        for advisory in self.advisories:
            (ignored if any(a.covers(advisory, today) for a in accepted) else failing).append(advisory)
        return failing, ignored


def parse_pip_audit(output: Mapping[str, Any], report: Report) -> list[str]:
    """Fold pip-audit's JSON into ``report``; return the packages pip-audit skipped."""
    skipped = []
    for dep in output.get("dependencies", []):
        name = canonical(dep["name"])
        if "skip_reason" in dep:
            skipped.append(name)
            continue
        report.by_pip_audit.add(name)
        for vuln in dep.get("vulns", []):
            report.add(
                Advisory(name, dep.get("version", report.pins.get(name, "?")), vuln["id"],
                         tuple(vuln.get("aliases", ())), tuple(vuln.get("fix_versions", ())),
                         vuln.get("description") or "")
            )  # fmt: skip
    return skipped


def fold_project_json(name: str, version: str, project: Mapping[str, Any], report: Report) -> None:
    """Audit one package from its project JSON, when its locked version is the newest release."""
    newest = project.get("info", {}).get("version")
    if newest != version:
        report.unaudited[name] = (
            f"locked {version}, newest {newest}: PyPI's per-release data is unavailable here and its project "
            "data covers only the newest release"
        )
        return
    report.by_project_json.add(name)
    for vuln in project.get("vulnerabilities") or []:
        if vuln.get("withdrawn"):
            continue
        report.add(
            Advisory(name, version, vuln["id"], tuple(vuln.get("aliases") or ()), tuple(vuln.get("fixed_in") or ()),
                     vuln.get("details") or vuln.get("summary") or "")
        )  # fmt: skip


def fetch_project_json(name: str, timeout: float = 30.0) -> dict[str, Any]:
    url = PYPI_PROJECT_JSON.format(name=name)
    with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (a fixed https URL)
        data: dict[str, Any] = json.load(response)
        return data


def run_pip_audit(lock: Path, timeout: float) -> dict[str, Any]:
    """pip-audit on the lock, without pip; its JSON report (raises RuntimeError when it did not run)."""
    pip_audit = Path(sys.executable).with_name("pip-audit")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "pip-audit.json"
        cmd = [str(pip_audit), "--disable-pip", "--require-hashes", "-r", str(lock), "--format", "json",
               "--output", str(out), "--progress-spinner", "off", "--timeout", str(int(timeout))]  # fmt: skip
        # Exit 1 means "vulnerabilities found" as well as "failed": the report file tells them apart.
        done = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=1800)
        if not out.is_file():
            raise RuntimeError(f"pip-audit did not run (exit {done.returncode}): {done.stderr.strip()[-2000:]}")
        data: dict[str, Any] = json.loads(out.read_text())
        return data


def audit(
    lock: Path,
    *,
    pip_audit: Callable[[Path], Mapping[str, Any]],
    project_json: Callable[[str], Mapping[str, Any]],
) -> Report:
    """Audit every pin of ``lock``: pip-audit first, then PyPI's project data for what it skipped."""
    report = Report(locked_pins(lock.read_text()))
    skipped = parse_pip_audit(pip_audit(lock), report)
    missing = sorted(set(report.pins) - report.by_pip_audit - set(skipped))
    skipped.extend(missing)  # not in pip-audit's report at all: look them up too

    def one(name: str) -> tuple[str, Mapping[str, Any] | str]:
        try:
            return name, project_json(name)
        except (OSError, urllib.error.URLError, ValueError) as exc:
            return name, f"PyPI's project data could not be read: {exc}"

    with ThreadPoolExecutor(max_workers=8) as pool:
        for name, result in pool.map(one, skipped):
            if isinstance(result, str):
                report.unaudited[name] = result
            else:
                fold_project_json(name, report.pins[name], result, report)
    return report


def render(report: Report, failing: list[Advisory], ignored: list[Advisory]) -> str:
    lines = []
    for advisory in failing:
        fix = ", ".join(advisory.fix_versions) or "none released"
        aliases = f" ({', '.join(advisory.aliases)})" if advisory.aliases else ""
        lines.append(f"VULNERABLE {advisory.package}=={advisory.version}: {advisory.id}{aliases}; fixed in: {fix}")
        if advisory.description:
            lines.append("    " + " ".join(advisory.description.split())[:400])
    lines.extend(f"accepted   {a.package}=={a.version}: {a.id} (deploy/setup/audit-ignore.toml)" for a in ignored)
    lines.extend(f"UNAUDITED  {name}: {why}" for name, why in sorted(report.unaudited.items()))
    audited = len(report.by_pip_audit) + len(report.by_project_json)
    verdict = f"{len(failing)} vulnerabilit{'y' if len(failing) == 1 else 'ies'} not accepted" if failing else (
        "no known vulnerability")  # fmt: skip
    lines.append(
        f"audited {audited} of {len(report.pins)} locked packages ({len(report.by_pip_audit)} by pip-audit, "
        f"{len(report.by_project_json)} from PyPI's project data): {verdict}"
        + (f"; {len(ignored)} accepted" if ignored else "")
        + (f"; {len(report.unaudited)} unaudited" if report.unaudited else "")
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lock", type=Path, default=DEFAULT_LOCK)
    parser.add_argument("--ignore-file", type=Path, default=DEFAULT_IGNORE)
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds per PyPI request")
    parser.add_argument("--require-complete", action="store_true",
                        default=os.environ.get("AUDIT_REQUIRE_COMPLETE") == "1",
                        help="fail when a locked package could not be audited")  # fmt: skip
    args = parser.parse_args(argv)
    try:
        ignore_file: Path = args.ignore_file
        accepted = load_ignores(ignore_file.read_text(), str(ignore_file)) if ignore_file.exists() else []
        report = audit(args.lock, pip_audit=lambda lock: run_pip_audit(lock, args.timeout),
                       project_json=lambda name: fetch_project_json(name, args.timeout))  # fmt: skip
    except (IgnoreFileError, RuntimeError, OSError) as exc:
        print(f"audit: {exc}", file=sys.stderr)
        return 2
    failing, ignored = report.split(accepted, dt.datetime.now(dt.UTC).date())
    print(render(report, failing, ignored))
    if failing:
        print("audit: upgrade the package (edit pyproject.toml, `make lock`), or accept the advisory in "
              "deploy/setup/audit-ignore.toml with the reason", file=sys.stderr)  # fmt: skip
        return 1
    if report.unaudited and args.require_complete:
        print("audit: some locked packages could not be audited (--require-complete)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
