"""Copy and reverse (Kazemnejad et al. 2023, "The Impact of Positional Encoding on Length
Generalization in Transformers", their causal decoder tasks): a string of ``length`` items
drawn uniformly from a small alphabet, then ``>``, then the same string (``copy``) or its
reverse (``reverse``). ``abca`` reversed: prompt ``abca>``, answer ``acba``.
"""

import dataclasses
import string

import numpy as np

from fire.tasks.base import Example, Task, TaskError


@dataclasses.dataclass(frozen=True)
class Copy(Task):
    alphabet_size: int = 10  # items drawn from the first this many lowercase letters
    reverse: bool = False  # answer the string reversed

    length_unit = "items"

    def symbols(self) -> tuple:
        return tuple(string.ascii_lowercase[: self.alphabet_size]) + (">",)

    def check(self) -> None:
        if not 2 <= self.alphabet_size <= 26:
            raise TaskError(f"task={self.name}'s alphabet_size is 2 to 26, not {self.alphabet_size}.")

    def max_tokens(self, length: int) -> int:
        return 2 * length + 2

    def example(self, rng: np.random.Generator, length: int) -> Example:
        self.check_length(length)
        items = tuple(string.ascii_lowercase[i] for i in rng.integers(0, self.alphabet_size, length))
        return Example(items + (">",), items[::-1] if self.reverse else items)
