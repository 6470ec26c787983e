"""Decimal addition with reversed digits and index hints (Zhou et al. 2024, "Transformers
Can Achieve Length Generalization But Not Robustly", arXiv 2402.09371, Section 3 and App. B.1).

An example of length N adds two N-digit operands (N = 1 allows a leading 0; otherwise the
first digit is not 0). Reversed, operands and sum are written least significant digit first.
With index hints each digit is preceded by a hint symbol: the hints are consecutive symbols of
an ordered set of 102, from a random start per example, and the k-th digits of both operands
and of the sum share the k-th hint. The sum has N digits, or N + 1 when the last column
carries (its hints continue the sequence). ``576+361=937`` reversed with hints from ``a``:

    prompt  a6b7c5+a1b6c3=        answer  a7b3c9
"""

import dataclasses
import string

import numpy as np

from fire.tasks.base import Example, Task, TaskError

# The ordered hint set: a-z, A-Z, then 50 letters of Latin Extended-A (U+0100 on), each one
# character so that a hinted number reads as text.
HINTS = tuple(string.ascii_lowercase + string.ascii_uppercase + "".join(chr(0x100 + k) for k in range(50)))
assert len(HINTS) == 102


@dataclasses.dataclass(frozen=True)
class Addition(Task):
    reversed: bool = True  # digits least significant first (operands and sum)
    index_hints: bool = True  # a hint symbol before each digit (Zhou et al.'s index hints)

    length_unit = "digits"

    def symbols(self) -> tuple:
        return tuple("0123456789+=") + (HINTS if self.index_hints else ())

    def max_length(self):
        # The sum's N + 1 hints must fit in the set from some start.
        return len(HINTS) - 1 if self.index_hints else None

    def training_lengths(self) -> tuple:
        return (1, 10)

    def max_tokens(self, length: int) -> int:
        per_digit = 2 if self.index_hints else 1
        return per_digit * (2 * length + length + 1) + 2 + 1  # operands, a carried sum, + =, EOS

    def operands(self, rng: np.random.Generator, n_digits: int) -> tuple:
        """Two uniform ``n_digits``-digit numbers as digit lists, most significant first."""
        first = 0 if n_digits == 1 else 1
        return tuple(
            [int(rng.integers(first, 10))] + [int(d) for d in rng.integers(0, 10, n_digits - 1)] for _ in range(2)
        )

    def example(self, rng: np.random.Generator, length: int) -> Example:
        self.check_length(length)
        a, b = self.operands(rng, length)
        # The start leaves room for a carry digit whether or not there is one, so it says nothing of the sum.
        start = int(rng.integers(0, len(HINTS) - length)) if self.index_hints else 0
        return self.formatted(a, b, start)

    def formatted(self, a: list, b: list, hint_start: int = 0) -> Example:
        """The example adding digit lists ``a`` and ``b`` (most significant first), hints from
        ``HINTS[hint_start]``: ``formatted([5, 7, 6], [3, 6, 1])`` is ``a6b7c5+a1b6c3=`` ->
        ``a7b3c9`` (reversed, hinted)."""
        total = int("".join(map(str, a))) + int("".join(map(str, b)))
        s = [int(d) for d in str(total)]
        return Example(
            self.number(a, hint_start) + ("+",) + self.number(b, hint_start) + ("=",), self.number(s, hint_start)
        )

    def number(self, digits_msb_first: list, hint_start: int) -> tuple:
        """A number's symbols: digits in the task's order, each after its hint if hinted (the
        hint of the k-th least significant digit is ``HINTS[hint_start + k]``)."""
        lsb_first = list(reversed(digits_msb_first))
        order = range(len(lsb_first)) if self.reversed else reversed(range(len(lsb_first)))
        out = []
        for k in order:
            out += [HINTS[hint_start + k]] if self.index_hints else []
            out.append(str(lsb_first[k]))
        return tuple(out)

    def check(self) -> None:
        if not isinstance(self.reversed, bool) or not isinstance(self.index_hints, bool):
            raise TaskError("task=addition's reversed and index_hints are true or false.")
