"""The task registry: benchmarks by name, groups expanded, user files by prefix.

    from cotspec.tasks import resolve_tasks
    resolve_tasks("gsm8k,svamp,bbh")  # gsm8k, svamp, then the 27 bbh:<task> in sorted order

Adding a benchmark is one entry in `_BUILTIN` (a `Task` declared next to its loader).
"""

from __future__ import annotations

import difflib
from typing import Iterable

from ..errors import ConfigError, CotspecError
from . import bbh, math, user
from .base import Example, Mode, PromptSpec, Task
from .datadir import read_jsonl, require_file, resolve_data_dir
from .math import gsm8k_dev_ids

__all__ = [
    "Example",
    "Mode",
    "PromptSpec",
    "Task",
    "get_task",
    "gsm8k_dev_ids",
    "list_groups",
    "list_tasks",
    "read_jsonl",
    "register",
    "require_file",
    "resolve_data_dir",
    "resolve_tasks",
]

_REGISTRY: dict[str, Task] = {}


def register(task: Task) -> Task:
    """Add `task` under its name; a second task with the same name is a bug and raises ValueError."""
    if task.name in _REGISTRY:
        raise ValueError(f"task {task.name!r} is already registered")
    if task.name in list_groups():
        raise ValueError(f"task name {task.name!r} is already a group name")
    _REGISTRY[task.name] = task
    return task


def list_tasks() -> list[str]:
    """Names of the registered tasks, in registration order (`jsonl:<path>` tasks are made on demand)."""
    return list(_REGISTRY)


def list_groups() -> dict[str, list[str]]:
    """Group name -> its member task names, sorted."""
    groups: dict[str, list[str]] = {}
    for task in _REGISTRY.values():
        if task.group:
            groups.setdefault(task.group, []).append(task.name)
    return {group: sorted(names) for group, names in groups.items()}


def get_task(name: str) -> Task:
    """The task called `name`; `jsonl:<path>` builds one for the user's file."""
    name = name.strip()
    if name.startswith(user.PREFIX):
        return user.jsonl_task(name)
    if name in _REGISTRY:
        return _REGISTRY[name]
    raise CotspecError(_unknown(name))


def _unknown(name: str) -> str:
    groups = list_groups()
    if name in groups:
        return f"{name} is a group of {len(groups[name])} tasks, not one task: name one as {name}:<task>"
    prefix = name.split(":", 1)[0] + ":" if ":" in name else None
    if prefix and prefix[:-1] in groups:
        members = [n.removeprefix(prefix) for n in groups[prefix[:-1]]]
        valid = ", ".join(members)
        hint = difflib.get_close_matches(name.removeprefix(prefix), members, n=1)
        guess = f" (did you mean {prefix}{hint[0]}?)" if hint else ""
        return f"unknown task {name!r}{guess}; {prefix}<task> takes one of: {valid}"
    top = [n for n in _REGISTRY if not _REGISTRY[n].group]
    hint = difflib.get_close_matches(name, top + list(groups), n=1)
    guess = f" (did you mean {hint[0]}?)" if hint else ""
    valid = ", ".join([*top, *(f"{g} (group of {len(m)})" for g, m in groups.items()),
                       *(f"{g}:<task>" for g in groups), f"{user.PREFIX}<path>"])
    return f"unknown task {name!r}{guess}; valid tasks: {valid}"


def resolve_tasks(spec: str | Iterable[str]) -> list[Task]:
    """`"gsm8k,svamp,bbh"` (or a list of names) -> tasks, groups expanded, duplicates dropped, order kept.

    Two `jsonl:` names for one file (`jsonl:q.jsonl,jsonl:./q.jsonl`) are one task, the first spelling.
    """
    names = spec.split(",") if isinstance(spec, str) else list(spec)
    groups = list_groups()
    tasks: dict[str, Task] = {}
    for name in (n.strip() for n in names):
        if not name:
            continue
        for member in groups.get(name, [name]):
            task = get_task(member)
            tasks.setdefault(_identity(task), task)
    if not tasks:
        raise ConfigError("tasks", "names no task: give at least one, e.g. gsm8k")
    return list(tasks.values())


def _identity(task: Task) -> str:
    """What makes two tasks the same: the name, or for a user's file the file itself however it is spelled."""
    return str(user.task_file(task.name)) if task.name.startswith(user.PREFIX) else task.name


_BUILTIN: tuple[Task, ...] = (*math.TASKS, *bbh.TASKS)
for _task in _BUILTIN:
    register(_task)
del _task
