"""Every TOML example of the README loads as it is written: a reader copies it into their
configuration file. An example of one section (`[channels.…]`, `[workload]`) is loaded
beside the one domain it names, with the queues it names; the roster example is a staffing request, checked by
``tests/tools/test_planning_cli.py``."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest

from switchboard.config import Config, load_config
from tests.support import to_toml

README = Path(__file__).resolve().parents[2] / "README.md"
ROSTER = "# roster.toml "


def _examples() -> list[tuple[int, str]]:
    text = README.read_text()
    return [
        (text.count("\n", 0, match.start()) + 1, match.group(1))
        for match in re.finditer(r"```toml\n(.*?)```", text, flags=re.S)
        if not match.group(1).startswith(ROSTER)
    ]


def test_the_readme_has_toml_examples() -> None:
    assert len(_examples()) >= 20


@pytest.mark.parametrize(("line", "example"), _examples(), ids=lambda v: str(v)[:40])
def test_a_toml_example_loads_as_configuration(line: int, example: str, tmp_path: Path) -> None:
    raw: dict[str, Any] = tomllib.loads(example)  # TOML 1.0, as the loader reads it
    assert set(raw) <= set(Config.__struct_fields__), f"README line {line}"
    queues = {name: {} for name in re.findall(r'\bqueue = "([^"]+)"', example)}
    raw.setdefault("domains", {"acme": {"routing": {"queues": {"default": {}, **queues}}}})
    path = tmp_path / "switchboard.toml"
    path.write_text(to_toml(raw))
    load_config({}, path)
