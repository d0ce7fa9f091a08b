"""Field descriptions for the generated schemas: each Struct field's docstring (the string
written under the field in its class) becomes its ``description`` in the JSON Schema files
and the AsyncAPI document, so consumers read there what a field means, not only its type.

msgspec puts a Struct's own docstring on its schema but knows nothing of its fields'; these
are read from the classes' source.
"""

from __future__ import annotations

import ast
import inspect
import itertools
import textwrap
from functools import cache
from typing import Any

import msgspec


@cache
def field_docs(struct: type[msgspec.Struct]) -> dict[str, str]:
    """``struct``'s field docstrings by field name, its bases' included (its own win)."""
    docs: dict[str, str] = {}
    for cls in reversed(struct.__mro__):
        if not (isinstance(cls, type) and issubclass(cls, msgspec.Struct)):
            continue
        if cls is msgspec.Struct or cls.__module__.split(".")[0] != "schemas":
            continue
        tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
        body = tree.body[0].body if isinstance(tree.body[0], ast.ClassDef) else []
        for field, after in itertools.pairwise(body):
            if (
                isinstance(field, ast.AnnAssign)
                and isinstance(field.target, ast.Name)
                and isinstance(after, ast.Expr)
                and isinstance(after.value, ast.Constant)
                and isinstance(after.value.value, str)
            ):
                docs[field.target.id] = inspect.cleandoc(after.value.value)
    return docs


def structs_of(*types: Any) -> dict[str, type[msgspec.Struct]]:
    """Every Struct reachable from ``types``, by the name msgspec gives its schema."""
    found: dict[str, type[msgspec.Struct]] = {}

    def walk(info: msgspec.inspect.Type) -> None:
        if isinstance(info, msgspec.inspect.StructType):
            if info.cls.__name__ in found:
                return
            found[info.cls.__name__] = info.cls
            for field in info.fields:
                walk(field.type)
            return
        for name in ("types", "item_type", "key_type", "value_type", "item_types"):
            inner = getattr(info, name, None)
            if isinstance(inner, tuple):
                for item in inner:
                    walk(item)
            elif isinstance(inner, msgspec.inspect.Type):
                walk(inner)

    for info in msgspec.inspect.multi_type_info(types):
        walk(info)
    return found


def describe_fields(definitions: dict[str, Any], *types: Any) -> None:
    """Add each field's docstring to ``definitions`` (``$defs`` or AsyncAPI components:
    schemas by Struct name) as its ``description``, in place."""
    structs = structs_of(*types)
    for name, schema in definitions.items():
        struct = structs.get(name)
        properties = schema.get("properties") if isinstance(schema, dict) else None
        if struct is None or not properties:
            continue
        for field, doc in field_docs(struct).items():
            encoded = struct.__struct_encode_fields__[struct.__struct_fields__.index(field)]
            if encoded in properties:
                properties[encoded]["description"] = doc
