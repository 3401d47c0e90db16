"""The supply chain: the hashed lock agrees with pyproject.toml, the audit's decisions, the system set-up.

No network: the lock is read as a file, the audit gets fake PyPI answers, and the system set-up script
runs against stub programs on a PATH of its own.
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
LOCK = ROOT / "requirements.lock"
RUNTIME_LOCK = ROOT / "requirements-runtime.lock"  # the Docker image's
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
SYSTEM_DEPS = ROOT / "deploy" / "setup" / "system-deps.sh"


def _load_audit() -> ModuleType:
    spec = importlib.util.spec_from_file_location("dvc_hub_audit", ROOT / "deploy" / "setup" / "audit.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is created
    spec.loader.exec_module(module)
    return module


audit = _load_audit()


def _lock_entries(lock: Path = LOCK) -> dict[str, tuple[Version, list[str]]]:
    """{canonical name: (version, hashes)} of every requirement of a lock file."""
    entries: dict[str, tuple[Version, list[str]]] = {}
    for block in re.split(r"\n(?=[A-Za-z0-9])", lock.read_text()):
        match = re.match(r"([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)", block)
        if match:
            hashes = re.findall(r"--hash=sha256:([0-9a-f]{64})", block)
            entries[canonicalize_name(match[1])] = (Version(match[2]), hashes)
    return entries


def _project_requirements() -> list[tuple[str, Requirement]]:
    reqs = [("dependencies", Requirement(r)) for r in PYPROJECT["project"]["dependencies"]]
    for extra, items in PYPROJECT["project"]["optional-dependencies"].items():
        reqs += [(f"extra {extra}", Requirement(r)) for r in items]
    reqs += [("build-system", Requirement(r)) for r in PYPROJECT["build-system"]["requires"]]
    return reqs


# ------------------------------------------------------------------------------------------ the lock


def test_every_requirement_of_pyproject_is_locked_at_its_version() -> None:
    """A dependency added or re-pinned in pyproject.toml without `make lock` fails here, naming it."""
    lock = _lock_entries()
    disagree = []
    for where, req in _project_requirements():
        name = canonicalize_name(req.name)
        if name not in lock:
            disagree.append(f"{req} ({where}) is not in requirements.lock")
        elif not req.specifier.contains(lock[name][0], prereleases=True):
            disagree.append(f"{req} ({where}) but requirements.lock has {name}=={lock[name][0]}")
    assert not disagree, "pyproject.toml and requirements.lock disagree; run `make lock`:\n" + "\n".join(disagree)


def test_the_image_lock_has_the_runtime_dependencies_at_the_same_pins() -> None:
    """requirements-runtime.lock (Docker image) = [project].dependencies and the build backend, pinned as in
    requirements.lock: the image runs the versions the suite tested."""
    full, runtime = _lock_entries(), _lock_entries(RUNTIME_LOCK)
    differ = [f"{name}=={version} (full lock: {full[name][0] if name in full else 'absent'})"
              for name, (version, _) in runtime.items() if name not in full or full[name][0] != version]  # fmt: skip
    assert not differ, f"run `make lock`: {differ}"
    runtime_reqs = [r for where, r in _project_requirements() if where in {"dependencies", "build-system"}]
    missing = [str(r) for r in runtime_reqs if canonicalize_name(r.name) not in runtime
               or not r.specifier.contains(runtime[canonicalize_name(r.name)][0], prereleases=True)]  # fmt: skip
    assert not missing, f"run `make lock`: not in requirements-runtime.lock as required: {missing}"
    dev_only = {canonicalize_name(Requirement(r).name) for r in PYPROJECT["project"]["optional-dependencies"]["dev"]}
    assert not dev_only & set(runtime), "the image lock must not carry the dev tools"
    assert all(hashes for _, hashes in runtime.values())


def test_project_dependencies_are_pinned_exactly() -> None:
    """Runtime and dev requirements are exact pins (the lock is resolved around them); build ones may range."""
    loose = [f"{req} ({where})" for where, req in _project_requirements()
             if where != "build-system" and not re.fullmatch(r"==[^,*]+", str(req.specifier))]  # fmt: skip
    assert not loose, f"pin these exactly (==) in pyproject.toml: {loose}"


def test_every_locked_package_has_a_hash_and_the_installer_is_locked() -> None:
    lock = _lock_entries()
    assert len(lock) > 20  # the parser found the lock's entries, not a header
    assert not [name for name, (_, hashes) in lock.items() if not hashes]
    # `make setup` installs with --no-build-isolation: pip and the build backend come from the lock too.
    assert {"pip", "setuptools"} <= set(lock)
    text = LOCK.read_text() + RUNTIME_LOCK.read_text()
    assert "-e " not in text
    assert "file:" not in text
    assert "git+" not in text


def test_make_lock_resolves_every_extra() -> None:
    """An extra added to pyproject.toml but not to `make lock`'s --extra flags would be missing from the lock."""
    makefile = (ROOT / "Makefile").read_text()
    recipe = makefile.split("\nlock:", 1)[1].split("\n\n", 1)[0]
    missing = [e for e in PYPROJECT["project"]["optional-dependencies"] if f"--extra {e}" not in recipe]
    assert not missing, f"add --extra {' --extra '.join(missing)} to the Makefile's `lock` recipe"


# ------------------------------------------------------------------------------------------ the audit


def _pip_audit_output(**deps: Any) -> dict[str, Any]:
    return {"dependencies": list(deps.values()), "fixes": []}


def _lock_file(tmp_path: Path, pins: dict[str, str]) -> Path:
    lock = tmp_path / "requirements.lock"
    lock.write_text("".join(f"{n}=={v} \\\n    --hash=sha256:{'0' * 64}\n" for n, v in pins.items()))
    return lock


def test_audit_finds_what_pip_audit_and_project_data_report(tmp_path: Path) -> None:
    lock = _lock_file(tmp_path, {"Alpha_Pkg": "1.0", "beta": "2.0", "gamma": "3.0", "delta": "0.9"})
    pip_audit = _pip_audit_output(
        a={"name": "alpha-pkg", "version": "1.0",
           "vulns": [{"id": "PYSEC-1", "aliases": ["CVE-1"], "fix_versions": ["1.1"], "description": "bad"}]},
        b={"name": "beta", "skip_reason": "Dependency not found on PyPI and could not be audited: beta (2.0)"},
        g={"name": "gamma", "skip_reason": "Dependency not found on PyPI and could not be audited: gamma (3.0)"},
    )  # fmt: skip
    projects = {
        "beta": {"info": {"version": "2.0"},  # one advisory under two ids is reported once
                 "vulnerabilities": [{"id": "GHSA-b", "aliases": ["CVE-2", "PYSEC-2"], "fixed_in": []},
                                     {"id": "PYSEC-2", "aliases": ["GHSA-b"], "fixed_in": []}]},
        "gamma": {"info": {"version": "3.1"}, "vulnerabilities": []},  # locked behind the newest release
        "delta": {"info": {"version": "0.9"}, "vulnerabilities": [{"id": "OLD", "withdrawn": "2020-01-01"}]},
    }
    report = audit.audit(lock, pip_audit=lambda _: pip_audit, project_json=lambda name: projects[name])
    assert sorted((a.package, a.id) for a in report.advisories) == [("alpha-pkg", "PYSEC-1"), ("beta", "GHSA-b")]
    assert report.by_pip_audit == {"alpha-pkg"}
    assert report.by_project_json == {"beta", "delta"}  # delta was missing from pip-audit's report: looked up
    assert set(report.unaudited) == {"gamma"}
    assert "newest 3.1" in report.unaudited["gamma"]


def test_audit_counts_an_unreachable_project_as_unaudited(tmp_path: Path) -> None:
    lock = _lock_file(tmp_path, {"beta": "2.0"})

    def down(name: str) -> dict[str, Any]:
        raise OSError("connection refused")

    report = audit.audit(lock, pip_audit=lambda _: _pip_audit_output(), project_json=down)
    assert "connection refused" in report.unaudited["beta"]
    assert not report.advisories


def test_accepted_advisories_match_by_id_or_alias_and_lapse() -> None:
    accepted = audit.load_ignores(
        '[[ignore]]\nid = "CVE-2"\npackage = "Beta"\nreason = "the hub never calls the affected API"\n'
        'until = 2027-01-31\n'
    )
    found = [audit.Advisory("beta", "2.0", "GHSA-b", ("CVE-2",)), audit.Advisory("beta", "2.0", "GHSA-other")]
    report = audit.Report({"beta": "2.0"}, advisories=found)
    failing, ignored = report.split(accepted, dt.date(2027, 1, 31))
    assert [a.id for a in ignored] == ["GHSA-b"]
    assert [a.id for a in failing] == ["GHSA-other"]
    failing, ignored = report.split(accepted, dt.date(2027, 2, 1))
    assert not ignored
    assert len(failing) == 2
    other_package = audit.Report({"gamma": "1"}, advisories=[audit.Advisory("gamma", "1", "CVE-2")])
    assert other_package.split(accepted, dt.date(2027, 1, 1))[0]  # an acceptance is for its package only


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ('[[ignore]]\nid = "CVE-1"\npackage = "x"\n', "`reason` is missing"),
        ('[[ignore]]\nid = "CVE-1"\npackage = "x"\nreason = "  "\n', "`reason` is missing"),
        ('[[ignore]]\npackage = "x"\nreason = "r"\n', "`id` is missing"),
        ('[[ignore]]\nid = "CVE-1"\nreason = "r"\n', "`package` is missing"),
        ('[[ignore]]\nid = "CVE-1"\npackage = "x"\nreason = "r"\nuntil = "soon"\n', "`until` must be a TOML date"),
        ('[[ignore]]\nid = "CVE-1"\npackage = "x"\nreason = "r"\nreasons = "r"\n', "unknown keys"),
        ('ignore-vuln = ["CVE-1"]\n', "unknown top-level keys"),
        ("[[ignore]\n", "not valid TOML"),
    ],
)
def test_an_ignore_entry_without_its_reason_is_refused(text: str, complaint: str) -> None:
    with pytest.raises(audit.IgnoreFileError, match=re.escape(complaint)):
        audit.load_ignores(text)


def test_the_shipped_ignore_file_is_valid() -> None:
    for entry in audit.load_ignores((ROOT / "deploy" / "setup" / "audit-ignore.toml").read_text()):
        assert canonicalize_name(entry.package) in _lock_entries(), f"{entry.package} is not locked: drop the entry"


# ------------------------------------------------------------------------------------------ system set-up


def _stub(directory: Path, name: str, script: str) -> None:
    path = directory / name
    path.write_text(f"#!/bin/sh\n{script}\n")
    path.chmod(0o755)


def _run_system_deps(
    tmp_path: Path, *, java: str | None, uid: int, have: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[str]:
    """system-deps.sh on a PATH of stubs only: `java` prints ``java``'s version line, `id -u` says ``uid``."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("sed", "head", "grep", "readlink"):
        real = subprocess.run(["sh", "-c", f"command -v {tool}"], capture_output=True, text=True, check=True)
        (bin_dir / tool).symlink_to(real.stdout.strip())
    _stub(bin_dir, "id", f"echo {uid}")
    _stub(bin_dir, "apt-get", "echo apt-get must not run here >&2; exit 99")
    if java is not None:
        _stub(bin_dir, "java", f"echo '{java}' >&2")
    for tool in have:
        _stub(bin_dir, tool, "exit 0")
    env = {"PATH": str(bin_dir), "PYTHON": sys.executable, "HOME": str(tmp_path)}
    return subprocess.run(["/bin/sh", str(SYSTEM_DEPS)], capture_output=True, text=True, env=env, timeout=60,
                          check=False)  # fmt: skip


def test_system_deps_prints_the_one_command_for_what_is_missing(tmp_path: Path) -> None:
    done = _run_system_deps(tmp_path, java='openjdk version "11.0.22" 2024-01-16', uid=1000)
    assert done.returncode == 1, done.stderr
    assert "apt-get install -y --no-install-recommends openjdk-17-jre-headless maven prometheus" in done.stderr
    assert "apt-get must not run" not in done.stderr


@pytest.mark.parametrize("java", ['java version "1.8.0_392"', None])
def test_system_deps_wants_java_17_or_newer(tmp_path: Path, java: str | None) -> None:
    done = _run_system_deps(tmp_path, java=java, uid=1000, have=("mvn", "prometheus", "promtool"))
    assert done.returncode == 1
    assert "--no-install-recommends openjdk-17-jre-headless\"" in done.stderr


def test_system_deps_changes_nothing_when_everything_is_there(tmp_path: Path) -> None:
    # uid 0: were anything missing, it would call the apt-get stub, which fails loudly.
    done = _run_system_deps(tmp_path, java='openjdk version "21.0.5" 2024-10-15', uid=0,
                            have=("mvn", "prometheus", "promtool"))  # fmt: skip
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
