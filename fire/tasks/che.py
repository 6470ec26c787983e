"""Two tasks of DeepMind's Chomsky-hierarchy benchmark (Delétang et al. 2023, "Neural Networks
and the Chomsky Hierarchy"; google-deepmind/neural_networks_chomsky_hierarchy, tasks/cs/), in
causal form: the input string is the prompt, ``=`` ends it, and the output is generated after
it. DeepMind's own setting is a non-causal encoder that reads output placeholders, so numbers
from this causal variant are not comparable with theirs.

* ``missing_duplicate``: a binary string ``w`` of ``length // 2`` symbols written twice, with
  one of the ``2 * (length // 2)`` symbols replaced by ``_``, then ``#`` if ``length`` is odd
  (so the prompt has ``length`` symbols before ``=``); the answer is the replaced symbol.
  ``0110`` twice with the 7th symbol replaced: prompt ``0110011_0=``, answer ``1``.
* ``odds_first``: a binary string ``s_1 ... s_n``; the answer lists the symbols at odd
  positions, then those at even positions (1-based): ``00110101`` -> ``01000111``. This is
  DeepMind's docstring and its examples; their generator's slices put the 0-based odd
  indices first, the reverse.
"""

import dataclasses

import numpy as np

from fire.tasks.base import Example, Task


@dataclasses.dataclass(frozen=True)
class MissingDuplicate(Task):
    length_unit = "symbols"

    def symbols(self) -> tuple:
        return ("0", "1", "_", "#", "=")

    def min_length(self) -> int:
        return 2

    def max_tokens(self, length: int) -> int:
        return length + 3

    def example(self, rng: np.random.Generator, length: int) -> Example:
        self.check_length(length)
        w = [str(d) for d in rng.integers(0, 2, length // 2)]
        doubled = w + w
        hole = int(rng.integers(0, len(doubled)))
        answer = doubled[hole]
        doubled[hole] = "_"
        return Example(tuple(doubled) + ("#",) * (length % 2) + ("=",), (answer,))


@dataclasses.dataclass(frozen=True)
class OddsFirst(Task):
    length_unit = "symbols"

    def symbols(self) -> tuple:
        return ("0", "1", "=")

    def max_tokens(self, length: int) -> int:
        return 2 * length + 2

    def example(self, rng: np.random.Generator, length: int) -> Example:
        self.check_length(length)
        s = tuple(str(d) for d in rng.integers(0, 2, length))
        return Example(s + ("=",), s[0::2] + s[1::2])
