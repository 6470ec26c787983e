"""Config keys, each declared once: its default, its meaning and the values it accepts.

A config block is a table ``{name: Key}``; a nested table is a block inside it. The config
builder reads the defaults (:func:`defaults`), ``--print_config`` the meanings and accepted
values (:func:`flatten`), and :func:`check` walks a config against its tables, so a key is
defaulted, documented and bounded on one line. Relations between keys (a batch that divides
over the mesh, a table long enough for the positions) are checked by their owners after it.

Also here: :func:`nearest_keys`, the valid key a mistyped one most likely meant.
"""

import dataclasses
import difflib
import math
import re
from typing import Any, Mapping, Optional

from absl import flags

from fire.errors import ConfigError
from fire.utils import did_you_mean

# ---------------------------------------------------------------- what a key accepts

# A value's text is read as ml_collections reads --config.KEY=VALUE: with absl's parsers
# (``0x10`` is an integer, ``t`` a boolean); each raises ValueError for text it cannot read.


@dataclasses.dataclass(frozen=True)
class Integer:
    """An integer (not a bool) of at least ``low``, or exactly ``special`` (e.g. -1: fill)."""

    low: int
    special: Optional[int] = None

    def accepts(self, value) -> bool:
        integer = isinstance(value, int) and not isinstance(value, bool)
        return integer and (value >= self.low or value == self.special)

    def parse(self, text: str) -> int:
        return flags.IntegerParser().parse(text)

    def __str__(self) -> str:
        return f"an integer >= {self.low}" + ("" if self.special is None else f" or {self.special}")


@dataclasses.dataclass(frozen=True)
class Number:
    """A finite number (an integer serves) from ``low`` to ``high``; ``open_low`` and
    ``open_high`` exclude the ends."""

    low: float = -math.inf
    high: float = math.inf
    open_low: bool = False
    open_high: bool = False

    def accepts(self, value) -> bool:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return False
        above = value > self.low if self.open_low else value >= self.low
        below = value < self.high if self.open_high else value <= self.high
        return above and below

    def parse(self, text: str) -> float:
        return flags.FloatParser().parse(text)

    def __str__(self) -> str:
        if self.high == math.inf:
            return f"{'>' if self.open_low else '>='} {self.low:g}"
        return f"in {'(' if self.open_low else '['}{self.low:g}, {self.high:g}{')' if self.open_high else ']'}"


@dataclasses.dataclass(frozen=True)
class Choice:
    """One of ``options``, a collection read when checked (a registry may grow meanwhile)."""

    options: Any

    def accepts(self, value) -> bool:
        return isinstance(value, str) and value in self.options

    def parse(self, text: str) -> str:
        return text

    def hint(self, value) -> str:
        return did_you_mean(str(value), list(self.options))

    def __str__(self) -> str:
        return f"one of {', '.join(self.options)}"


@dataclasses.dataclass(frozen=True)
class Boolean:
    """True or False; on the command line also absl's spellings (``t``, ``1``, ``false`` ...)."""

    def accepts(self, value) -> bool:
        return isinstance(value, bool)

    def parse(self, text: str) -> bool:
        return flags.BooleanParser().parse(text)

    def __str__(self) -> str:
        return "True or False"


@dataclasses.dataclass(frozen=True)
class Text:
    """A string; ``empty``: '' (or only spaces) is allowed."""

    empty: bool = True

    def accepts(self, value) -> bool:
        return isinstance(value, str) and (self.empty or bool(value.strip()))

    def parse(self, text: str) -> str:
        return text

    def __str__(self) -> str:
        return "a string" if self.empty else "a non-empty string"


# ---------------------------------------------------------------- keys and tables


@dataclasses.dataclass(frozen=True)
class Key:
    """One config key.

    Attributes:
      default: its value, or a function of the sweep axes (``{'pe', 'size', 'train_len',
        'data', 'smoke'}``) for a default that follows them (a model size's width).
      meaning: one line for ``--print_config`` and error messages.
      values: what it accepts: :class:`Integer`, :class:`Number`, :class:`Choice`,
        :class:`Boolean` or :class:`Text` (``accepts(value)``, ``parse(text)``, ``str()``).
    """

    default: Any
    meaning: str
    values: Any

    def default_for(self, axes: Optional[Mapping]):
        return self.default(axes) if callable(self.default) else self.default

    def problem(self, path: str, value) -> str:
        """The one-line message for a value ``path`` does not accept."""
        hint = self.values.hint(value) if hasattr(self.values, "hint") else ""
        return f"{path} must be {self.values}, got {value!r} ({self.meaning}).{hint}"


def values_of_default(default, low: float = 0, positive: bool = False):
    """The values an option accepts, from its default's type: true/false for a bool, an
    integer (a float option takes one too) or a finite number of at least ``low`` (above 0
    with ``positive``), text otherwise."""
    if isinstance(default, bool):
        return Boolean()
    if isinstance(default, int):
        return Integer(1 if positive else int(low))
    if isinstance(default, float):
        return Number(float(low), open_low=positive)
    return Text()


def defaults(table: Mapping, axes: Optional[Mapping] = None) -> dict:
    """``{name: default}`` of a table (nested tables as nested dicts), for the sweep ``axes``."""
    return {
        name: defaults(entry, axes) if isinstance(entry, Mapping) else entry.default_for(axes)
        for name, entry in table.items()
    }


def flatten(table: Mapping, prefix: str = "") -> dict:
    """``{'block.name': Key}`` of a table and the tables in it."""
    out = {}
    for name, entry in table.items():
        path = f"{prefix}{name}"
        out.update(flatten(entry, path + ".") if isinstance(entry, Mapping) else {path: entry})
    return out


def check(node: Mapping, table: Mapping, prefix: str = "") -> None:
    """Every value of ``node`` (a ConfigDict or dict) against its key in ``table``, in the
    table's order; keys ``node`` does not have are skipped (their defaults apply).

    Raises:
      ConfigError: the first value its key does not accept, naming the key (``prefix`` +
        name), what it accepts, the value and the key's meaning.
    """
    for name, entry in table.items():
        if name not in node:
            continue
        if isinstance(entry, Mapping):
            check(node[name], entry, f"{prefix}{name}.")
        elif not entry.values.accepts(node[name]):
            raise ConfigError(entry.problem(prefix + name, node[name]))


# ---------------------------------------------------------------- the key that was meant

# British spellings folded into American ones, so that either finds the other:
# normaliser/normalizer, colour/color, centre/center, analyse/analyze.
_SPELLINGS = ((r"is(?=e|ing|ation)", "iz"), (r"ys(?=e|ing)", "yz"), (r"our(?=_|$)", "or"), (r"tre(?=_|$)", "ter"))


def fold_spelling(name: str) -> str:
    """``name`` with British spellings made American (``normaliser_cap`` -> ``normalizer_cap``)."""
    for pattern, american in _SPELLINGS:
        name = re.sub(pattern, american, name)
    return name


def _similarity(a: str, b: str) -> float:
    """How alike two key names are, in [0, 1], spellings folded; one a prefix of the other
    counts as 0.9."""
    a, b = fold_spelling(a), fold_spelling(b)
    if min(len(a), len(b)) >= 3 and (a.startswith(b) or b.startswith(a)):
        return 0.9
    return difflib.SequenceMatcher(None, a, b).ratio()


def nearest_keys(key: str, valid, n: int = 3) -> list:
    """The valid keys a mistyped ``key`` most likely meant: abbreviations (``learning_rate``
    -> ``lr``), the same name in another group (``lr`` -> ``optimizer.lr``) or in the other
    spelling (``normaliser_cap`` -> ``normalizer_cap``), then close spellings of its name,
    its own group first."""
    leaf_of = lambda k: k.rsplit(".", 1)[-1]
    initials = lambda name: "".join(w[0] for w in name.split("_") if w)
    leaf, parent = leaf_of(key), key.rpartition(".")[0]
    found = [
        v for v in valid
        if len(initials(leaf)) > 1 and initials(leaf) == leaf_of(v)
        or len(initials(leaf_of(v))) > 1 and initials(leaf_of(v)) == leaf
    ]  # fmt: skip
    found += [v for v in valid if fold_spelling(leaf_of(v)) == fold_spelling(leaf)]
    close = sorted(valid, key=lambda v: (v.rpartition(".")[0] != parent, -_similarity(leaf, leaf_of(v))))
    found += [v for v in close if _similarity(leaf, leaf_of(v)) >= 0.7]
    return list(dict.fromkeys(found))[:n]


def suggest(key: str, valid) -> str:
    """``' Did you mean a, b?'`` for :func:`nearest_keys`, else ``''``."""
    hint = nearest_keys(key, valid)
    return f" Did you mean {', '.join(hint)}?" if hint else ""
