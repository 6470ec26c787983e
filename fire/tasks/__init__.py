"""Tasks by name, behind one registry: seeded generators of ``(prompt, answer)`` examples
whose answer depends on distant tokens, scored by exact match at each length.

``build_task(name, options)`` returns the task with its options checked; unknown names and
options fail with the nearest valid ones. To add a task: subclass :class:`Task`
(``base.py`` documents the contract; its options are its dataclass fields, each with a
comment) in a module of its own and add one ``register`` line below.
"""

import dataclasses
from typing import Mapping, Optional, Type

from fire.keys import Key, suggest, values_of_default
from fire.tasks.addition import HINTS, Addition
from fire.tasks.base import Example, Task, TaskError, Vocabulary
from fire.tasks.che import MissingDuplicate, OddsFirst
from fire.tasks.copying import Copy
from fire.tasks.passkey import Multikey, Passkey
from fire.utils import did_you_mean

# name -> (task class, option values that define the name)
REGISTRY: dict = {}


def register(name: str, cls: Type[Task], **fixed_options) -> None:
    """Makes ``cls`` (with ``fixed_options`` set) available as ``task=name``."""
    REGISTRY[name] = (cls, dict(fixed_options))


register("addition", Addition)
register("copy", Copy)
register("reverse", Copy, reverse=True)
register("passkey", Passkey)
register("multikey", Multikey)
register("missing_duplicate", MissingDuplicate)
register("odds_first", OddsFirst)


def lookup(name: str):
    """``(task class, fixed options)`` of a registered task."""
    if name not in REGISTRY:
        raise TaskError(f"Unknown task task={name}.{did_you_mean(name, REGISTRY)} Valid: {', '.join(REGISTRY)}.")
    return REGISTRY[name]


def task_options(name: str) -> dict:
    """The task's options with their defaults (the name's fixed values included)."""
    cls, fixed = lookup(name)
    return {f.name: fixed.get(f.name, f.default) for f in dataclasses.fields(cls)}


def option_keys(name: str) -> dict:
    """The task's options as :class:`fire.keys.Key` declarations (default, meaning, values)."""
    cls = lookup(name)[0]
    meanings = cls.option_help()
    table = {}
    for key, default in task_options(name).items():
        # A float option may be -1 (passkey's depth: uniform); the task's check() says more.
        values = values_of_default(default, low=-1 if isinstance(default, float) else 0)
        table[key] = Key(default, meanings.get(key, f"an option of {cls.__name__}"), values)
    return table


def build_task(name: str, options: Optional[Mapping] = None) -> Task:
    """The task ``name`` with ``options`` over its defaults, checked.

    Raises:
      TaskError: an unknown name or option, or a value the task cannot honour.
    """
    cls, fixed = lookup(name)
    valid = task_options(name)
    options = dict(options or {})
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise TaskError(
            f"task={name} has no option(s) {', '.join(unknown)}.{suggest(unknown[0], valid)} "
            f"Valid: {', '.join(sorted(valid)) or 'none'}."
        )
    task = cls(**{**valid, **options})
    object.__setattr__(task, "_registered_name", name)
    task.check()
    return task


__all__ = [
    "HINTS", "REGISTRY", "Example", "Task", "TaskError", "Vocabulary", "build_task", "lookup", "option_keys",
    "register", "task_options", "Addition", "Copy", "MissingDuplicate", "Multikey", "OddsFirst", "Passkey",
]  # fmt: skip
