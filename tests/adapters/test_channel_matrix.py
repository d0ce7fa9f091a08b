"""The README's channel matrix is what the adapters declare (``adapters.catalog``)."""

from __future__ import annotations

from pathlib import Path

from adapters.catalog import channel_matrix, declarations, with_matrix
from schemas import Channel

README = Path(__file__).resolve().parents[2] / "README.md"


def test_the_readme_matrix_is_generated_from_the_declarations() -> None:
    readme = README.read_text(encoding="utf-8")
    assert channel_matrix() in readme, "run: .venv/bin/python -m adapters.catalog"
    assert with_matrix(readme) == readme


def test_every_channel_has_a_provider_and_every_cell_says_something() -> None:
    declared = declarations()
    assert {c for d in declared for c in d.channels} == {c.value for c in Channel}
    for declaration in declared:
        for name in type(declaration).__dataclass_fields__:
            value = getattr(declaration, name)
            assert value, f"{declaration.provider}: {name} is empty"
