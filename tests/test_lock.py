"""The lock files agree with pyproject.toml, on every Python and platform we support.

``make install`` (so CI) installs ``requirements.lock`` and the container image
``requirements-service.lock``, both with ``--require-hashes``; ``make lock`` writes them
from ``pyproject.toml``. These tests fail when someone changes a dependency in
``pyproject.toml`` without running ``make lock``, or edits a lock by hand.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest
from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
LOCK = ROOT / "requirements.lock"
SERVICE_LOCK = ROOT / "requirements-service.lock"

SUPPORTED_PYTHONS = ("3.11", "3.12", "3.13")
SUPPORTED_MACHINES = ("x86_64", "aarch64")
LOCKED_EXTRAS = ("embedded", "dev")
"""The extras ``make install`` installs (the service lock has none)."""


@dataclass(frozen=True)
class Pin:
    name: str
    version: Version
    marker: Marker | None
    hashes: tuple[str, ...]
    via: tuple[str, ...]


def read_lock(path: Path) -> dict[str, Pin]:
    """Pins by canonical name, from a ``uv pip compile --generate-hashes`` file."""
    pins: dict[str, Pin] = {}
    text = path.read_text()
    # One entry: "name==version [; marker] \" then hash lines, then "# via" comments.
    for block in re.split(r"\n(?=\S)", text):
        if block.startswith("#") or not block.strip():
            continue
        head, *rest = block.split("\n")
        match = re.fullmatch(r"([A-Za-z0-9._-]+)==(\S+)(?: ; (.+?))? \\", head)
        assert match, f"{path.name}: not a pinned requirement: {head!r}"
        name, version, marker = match.groups()
        hashes = tuple(re.findall(r"--hash=sha256:([0-9a-f]{64})", block))
        via = tuple(
            line.strip().removeprefix("# via").strip().lstrip("#").strip()
            for line in rest
            if line.strip().startswith("#")
        )
        key = canonicalize_name(name)
        assert key not in pins, f"{path.name}: {name} pinned twice"
        pins[key] = Pin(
            key,
            Version(version),
            Marker(marker) if marker else None,
            hashes,
            tuple(v for v in via if v),
        )
    return pins


def environments() -> list[dict[str, str]]:
    return [
        {
            "python_version": python,
            "python_full_version": f"{python}.0",
            "sys_platform": "linux",
            "platform_system": "Linux",
            "platform_machine": machine,
            "os_name": "posix",
            "implementation_name": "cpython",
            "platform_python_implementation": "CPython",
        }
        for python in SUPPORTED_PYTHONS
        for machine in SUPPORTED_MACHINES
    ]


def build_requirements() -> list[Requirement]:
    return [Requirement(r) for r in PYPROJECT["build-system"]["requires"]]


def service_requirements() -> list[Requirement]:
    return [Requirement(r) for r in PYPROJECT["project"]["dependencies"]]


def locked_requirements() -> list[Requirement]:
    extras = PYPROJECT["project"]["optional-dependencies"]
    return [
        *service_requirements(),
        *(Requirement(r) for extra in LOCKED_EXTRAS for r in extras[extra]),
    ]


def disagreements(
    requirements: list[Requirement], pins: dict[str, Pin], environment: dict[str, str]
) -> list[str]:
    found = []
    for requirement in requirements:
        if requirement.marker is not None and not requirement.marker.evaluate(environment):
            continue
        pin = pins.get(canonicalize_name(requirement.name))
        if pin is None or (pin.marker is not None and not pin.marker.evaluate(environment)):
            found.append(f"{requirement} is not locked")
        elif not requirement.specifier.contains(pin.version, prereleases=True):
            found.append(f"{requirement} is locked at {pin.version}")
    return found


@pytest.mark.parametrize(
    "environment", environments(), ids=lambda e: f"py{e['python_version']}-{e['platform_machine']}"
)
def test_every_requirement_is_locked_at_a_version_it_allows(environment: dict[str, str]) -> None:
    lock, service = read_lock(LOCK), read_lock(SERVICE_LOCK)
    assert disagreements([*locked_requirements(), *build_requirements()], lock, environment) == []
    assert (
        disagreements([*service_requirements(), *build_requirements()], service, environment) == []
    )


def test_every_pin_has_hashes_and_a_reason_to_be_there() -> None:
    """A pin reached from no requirement (a dependency dropped from pyproject.toml but
    still locked) or without hashes (``--require-hashes`` would refuse it) fails."""
    declared = {canonicalize_name(r.name) for r in locked_requirements()}
    # `make lock` feeds the build backend on standard input, which uv does not annotate.
    build = {canonicalize_name(r.name) for r in build_requirements()}
    for path in (LOCK, SERVICE_LOCK):
        pins = read_lock(path)
        assert build <= pins.keys(), f"{path.name} lacks the build backend"
        for pin in pins.values():
            assert pin.hashes, f"{path.name}: {pin.name} has no hash"
            if pin.name in build and not pin.via:
                continue
            assert pin.via, f"{path.name}: {pin.name} says nothing of why it is locked"
            for reason in pin.via:
                if reason.startswith("switchboard") or reason == "-":
                    assert pin.name in declared, f"{path.name}: {pin.name} is no longer required"
                elif not reason.startswith("-c "):
                    assert canonicalize_name(reason) in pins, (
                        f"{path.name}: {pin.name} is locked for {reason}, which is not"
                    )


def test_the_image_lock_takes_the_development_lock_versions() -> None:
    """The container runs exactly the versions the test suite ran."""
    lock, service = read_lock(LOCK), read_lock(SERVICE_LOCK)
    for pin in service.values():
        assert pin.name in lock, pin.name
        assert (pin.version, set(pin.hashes)) == (
            lock[pin.name].version,
            set(lock[pin.name].hashes),
        )


def test_installs_take_the_lock_with_hashes_and_resolve_nothing_else() -> None:
    makefile = (ROOT / "Makefile").read_text()
    install = makefile[makefile.index("$(STAMP): ") : makefile.index("install: $(STAMP)")]
    pip_lines = [line.strip() for line in install.splitlines() if "pip install" in line]
    assert len(pip_lines) == 2
    assert "--require-hashes --no-deps -r $(LOCK)" in pip_lines[0]
    assert "--no-deps --no-build-isolation -e ." in pip_lines[1]
    assert "LOCK := requirements.lock" in makefile
    assert "SERVICE_LOCK := requirements-service.lock" in makefile


def run_make_lock(workdir: Path, *arguments: str) -> None:
    """``make lock`` in a copy of the project, with this suite's virtual environment."""
    for name in ("Makefile", "pyproject.toml", LOCK.name, SERVICE_LOCK.name):
        shutil.copy(ROOT / name, workdir / name)
    venv = Path(sys.prefix)
    subprocess.run(
        [
            "make",
            "--no-print-directory",
            "-o",
            str(venv / ".installed"),
            "lock",
            f"VENV={venv}",
            *arguments,
        ],
        cwd=workdir,
        check=True,
        capture_output=True,
        timeout=300,
    )


def test_make_lock_reproduces_the_committed_locks(tmp_path: Path) -> None:
    """The locks are exactly what ``make lock`` makes of pyproject.toml: nobody edited them
    by hand, and no range changed without a new lock."""
    run_make_lock(tmp_path)
    assert (tmp_path / LOCK.name).read_text() == LOCK.read_text()
    assert (tmp_path / SERVICE_LOCK.name).read_text() == SERVICE_LOCK.read_text()


def test_upgrading_one_package_moves_that_package_alone(tmp_path: Path) -> None:
    """The README's upgrade recipe. What it finds depends on the index today; what it may
    change does not."""
    run_make_lock(tmp_path, "LOCK_ARGS=--upgrade-package msgspec")
    before, after = read_lock(LOCK), read_lock(tmp_path / LOCK.name)
    changed = {name for name in before.keys() | after.keys() if before.get(name) != after.get(name)}
    assert changed <= {"msgspec"}
    assert after["msgspec"].version >= before["msgspec"].version
