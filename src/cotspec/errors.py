"""The one exception type users see.

Everything a user can get wrong (a path, a task name, a malformed line) raises `CotspecError` with a
message that fits on one line and says what to do. The CLI prints it as ``error: <message>`` and exits
with status 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class CotspecError(Exception):
    """A user-facing error: one line, names the file/line/field at fault and the fix."""

    exit_code = 2

    def __init__(self, message: str):
        # Collapse newlines: the contract is one line on stderr.
        super().__init__(" ".join(message.split()))
