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


class ConfigError(CotspecError):
    """A bad setting, named by its config field rather than by any front end's spelling of it.

    `field` is the dotted path of the setting in its config object (``max_new_tokens``, ``train.lr``);
    `message` says what is wrong and what to do, without naming the field. Library code raises it from
    config checks; each front end renders the field in its own words: the CLI as its flag
    (``--max-new-tokens``), a dotted override as the key, a YAML file as ``file:line``. Unrendered (the
    Python API), it reads ``max_new_tokens: must be >= 1, got 0``.
    """

    def __init__(self, field: str, message: str):
        self.field = field
        self.message = " ".join(message.split())
        super().__init__(f"{field}: {self.message}")

    def within(self, section: str) -> "ConfigError":
        """The same error seen from the config that holds this one as `section` (``train`` + ``lr``)."""
        return ConfigError(f"{section}.{self.field}" if section else self.field, self.message)
