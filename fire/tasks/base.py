"""The task contract: a seeded generator of ``(prompt, answer)`` examples at a requested
length, over the task's own symbols.

A task is a frozen dataclass whose fields are its options (``--config.task.reversed=false``),
each with a comment that documents it. It implements:

* :meth:`Task.symbols`: its symbols, in a fixed order (the vocabulary's ids follow it);
* :meth:`Task.example`: one example of a given length, drawn with a numpy ``Generator``;
* ``length_unit`` (what a length counts: digits, items, tokens) and, where the task cannot
  make every length, :meth:`Task.min_length` and :meth:`Task.max_length`.

The :class:`Vocabulary` built from the symbols adds PAD, BOS and EOS; an answer is scored
with its EOS, so a model must also say where it ends.
"""

import dataclasses
import functools
import hashlib
from typing import ClassVar, Optional, Sequence

import numpy as np

from fire.errors import UserError
from fire.utils import field_comments


class TaskError(UserError, ValueError):
    """A task, option or length that cannot be served."""


# The first word of every example generator's seed sequence: training, validation and test
# examples are drawn from different sequences, so a test example is never a training
# example's draw (whatever the seeds), though a small task can make the same example twice.
TRAINING_STREAM, TEST_SET, VALIDATION_SET = 0x7472616E, 0x74657374, 0x76616C69


def training_rng(seed: int, step: int, row: int) -> np.random.Generator:
    """The generator of row ``row`` of the global training batch at ``step``."""
    return np.random.default_rng([TRAINING_STREAM, seed, step, row])


def test_rng(eval_seed: int, length: int, k: int) -> np.random.Generator:
    """The generator of test example ``k`` at ``length``."""
    return np.random.default_rng([TEST_SET, eval_seed, length, k])


def validation_rng(length: int, k: int) -> np.random.Generator:
    """The generator of validation example ``k`` at ``length`` (training's progress check:
    neither a training nor a test draw)."""
    return np.random.default_rng([VALIDATION_SET, length, k])


@dataclasses.dataclass(frozen=True)
class Example:
    """``prompt`` and ``answer`` as sequences of the task's symbols (the answer without EOS)."""

    prompt: tuple
    answer: tuple


@dataclasses.dataclass(frozen=True)
class Task:
    """Base class of every task (see the module docstring)."""

    length_unit: ClassVar[str] = "tokens"
    separator: ClassVar[str] = ""  # joins symbols into text: "" for characters, " " for words

    def symbols(self) -> tuple:
        raise NotImplementedError

    def example(self, rng: np.random.Generator, length: int) -> Example:
        raise NotImplementedError

    def min_length(self) -> int:
        """The shortest length the task can make."""
        return 1

    def max_length(self) -> Optional[int]:
        """The longest length the task can make; None: no limit."""
        return None

    def training_lengths(self) -> tuple:
        """The default ``(min_len, max_len)`` of the training curriculum."""
        return (self.min_length(), 20)

    def max_tokens(self, length: int) -> int:
        """The most tokens an example of ``length`` has: prompt, answer and EOS."""
        raise NotImplementedError

    def check(self) -> None:
        """Raises :class:`TaskError` for option values the task cannot honour."""

    def check_length(self, length: int) -> None:
        """Raises :class:`TaskError` for a length the task cannot make, naming its range."""
        low, high = self.min_length(), self.max_length()
        if not isinstance(length, (int, np.integer)) or length < low or (high is not None and length > high):
            span = f"{low} to {high}" if high is not None else f"at least {low}"
            raise TaskError(f"task={self.name} makes lengths of {span} {self.length_unit}, not {length}.")

    @property
    def name(self) -> str:
        return getattr(self, "_registered_name", type(self).__name__.lower())

    @functools.cached_property
    def vocabulary(self) -> "Vocabulary":
        return Vocabulary(self.name, self.symbols(), self.separator)

    @classmethod
    def option_help(cls) -> dict:
        """``{option: meaning}`` from the comments on the class's option fields."""
        return dict(field_comments(cls, Task))


class Vocabulary:
    """The task's symbols as ids ``0..n-1``, then PAD, BOS and EOS: the tokenizer of a task
    run (the interface of :class:`fire.data.Tokenizer`).

    Text maps to symbols character by character (``separator ""``) or by whitespace
    (``separator " "``); a symbol the task does not have is a :class:`TaskError`."""

    def __init__(self, task_name: str, symbols: Sequence[str], separator: str):
        symbols = tuple(symbols)
        if len(set(symbols)) != len(symbols) or any(not s or s.isspace() for s in symbols):
            raise TaskError(f"task={task_name}'s symbols must be distinct non-blank strings.")
        if separator == "" and any(len(s) != 1 for s in symbols):
            raise TaskError(f"task={task_name} joins symbols without a separator, so each must be one character.")
        self.name, self.symbols, self.separator = f"task:{task_name}", symbols, separator
        self.ids = {s: i for i, s in enumerate(symbols)}
        self.pad_id, self.bos_id, self.eos_id = len(symbols), len(symbols) + 1, len(symbols) + 2
        self.vocab_size = len(symbols) + 3
        self.fingerprint = hashlib.sha256("\x00".join((separator, *symbols)).encode()).hexdigest()[:16]

    def split(self, text: str) -> list:
        return list(text.replace(" ", "")) if self.separator == "" else text.split()

    def encode_symbols(self, symbols: Sequence[str]) -> np.ndarray:
        try:
            return np.array([self.ids[s] for s in symbols], np.int32)
        except KeyError as e:
            raise TaskError(f"{e.args[0]!r} is not a symbol of {self.name}.") from None

    def encode(self, text: str) -> np.ndarray:
        return self.encode_symbols(self.split(text))

    def encode_batch(self, texts: Sequence[str]) -> list:
        return [self.encode(t) for t in texts]

    def decode(self, ids) -> str:
        """The symbols of ``ids``; PAD and BOS are dropped, EOS is written ``<eos>``."""
        names = {self.eos_id: "<eos>"}  # PAD, BOS and ids past the vocabulary: nothing
        shown = (self.symbols[i] if i < len(self.symbols) else names.get(i) for i in map(int, ids))
        return self.separator.join(s for s in shown if s)

    def n_bytes(self, ids) -> int:
        """UTF-8 bytes of the symbols (specials: 0), for the Tokenizer interface."""
        return sum(len(self.symbols[i].encode()) for i in map(int, ids) if i < len(self.symbols))
