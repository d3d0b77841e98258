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
from functools import cache


@cache
def field_docs(cls: type) -> dict[str, str]:
    """Map each annotated field of `cls` to the string literal written right below it."""
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
