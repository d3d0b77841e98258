"""Field docstrings of config dataclasses, so each field's docstring is also its flag's --help.

    @dataclass
    class Config:
        limit: int | None = None
        \"\"\"Evaluate the first N examples of each task.\"\"\"

`field_docs(Config)["limit"]` returns that sentence. One source of truth for code readers and CLI users.
"""

from __future__ import annotations

import ast
import inspect
import textwrap
from dataclasses import is_dataclass
from functools import cache


@cache
def field_docs(cls: type) -> dict[str, str]:
    """Map each annotated field of `cls` (and of its base classes) to the string literal written right
    below it; a subclass's docstring wins over its base's for a field both declare."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if klass is cls or is_dataclass(klass):
            docs.update(_own_field_docs(klass))
    return docs


def _own_field_docs(cls: type) -> dict[str, str]:
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    body = tree.body[0].body  # type: ignore[attr-defined]
    docs: dict[str, str] = {}
    for node, following in zip(body, body[1:]):
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and isinstance(following, ast.Expr)
            and isinstance(following.value, ast.Constant)
            and isinstance(following.value.value, str)
        ):
            docs[node.target.id] = " ".join(following.value.value.split())
    return docs
