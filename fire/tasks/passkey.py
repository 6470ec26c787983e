"""Retrieval from far away: the passkey (Mohtashami & Jaggi 2023, "Landmark Attention", the
format of epfml/landmark-attention's run_test.py) and RULER's multi-key needle (Hsieh et al.
2024), word by word.

``passkey``: the instruction, filler ("The grass is green. The sky is blue. The sun is
yellow. Here we go. There and back again." repeated), the needle "The pass key is K. Remember
it. K is the pass key." at a depth of the filler, more filler, then the query "What is the
pass key? The pass key is"; the answer is K, uniform in 1..50000, written digit by digit.

``multikey``: the same instruction and filler with ``num_keys`` needles "The special magic
number for NAME is: N." of distinct names at random places, and the query "What is the special
magic number for NAME? The special magic number for NAME is:" for one of them (its needle at
``depth``); the answer is its N. A model cannot answer by copying the only number in sight.

A length is the prompt's size in tokens (words, digits and punctuation marks are tokens): the
filler takes what the instruction, needles and query leave, cut from the repeated filler.
"""

import dataclasses

import numpy as np

from fire.tasks.base import Example, Task, TaskError

INSTRUCTION = tuple(
    "There is an important info hidden inside a lot of irrelevant text . Find it and memorize them . "
    "I will quiz you about the important information there .".split()
)
FILLER = tuple("The grass is green . The sky is blue . The sun is yellow . Here we go . There and back again .".split())
KEYS = (1, 50000)  # K uniform in this range, inclusive
NAMES = tuple(
    "Alice Bob Carol Dave Erin Frank Grace Heidi Ivan Judy Karl Laura Mike Nina Oscar Peggy Quinn Rita Sam Tina "
    "Uma Victor Wendy Xavier Yara Zack Amber Boris Cleo Diego Elsa Felix Gina Hugo Iris Jack Kira Leo Mona Nils "
    "Olga Paul Rosa Seth Tara Ugo Vera Walt Yuri Zoe".split()
)
DIGITS = tuple("0123456789")


def digits(k: int) -> tuple:
    return tuple(str(k))


def filler(n_tokens: int) -> list:
    """The first ``n_tokens`` tokens of the filler repeated."""
    return [FILLER[i % len(FILLER)] for i in range(n_tokens)]


@dataclasses.dataclass(frozen=True)
class Passkey(Task):
    depth: float = -1.0  # the needle's place in the filler, 0 (start) to 1 (end); -1: uniform per example

    length_unit = "tokens"
    separator = " "

    def symbols(self) -> tuple:
        words = INSTRUCTION + FILLER + self.needle(0) + self.query()
        return tuple(dict.fromkeys(words + DIGITS + ("?", ":")))

    def needle(self, key: int) -> tuple:
        return ("The", "pass", "key", "is", *digits(key), ".", "Remember", "it", ".", *digits(key), "is", "the",
                "pass", "key", ".")  # fmt: skip

    def query(self) -> tuple:
        return tuple("What is the pass key ? The pass key is".split())

    def check(self) -> None:
        if not (self.depth == -1 or 0 <= self.depth <= 1):
            raise TaskError(f"task={self.name}'s depth is 0 to 1, or -1 for uniform, not {self.depth}.")

    def fixed_tokens(self) -> int:
        """The prompt's tokens besides the filler, with the longest keys."""
        return len(INSTRUCTION) + len(self.needle(KEYS[1])) + len(self.query())

    def min_length(self) -> int:
        return self.fixed_tokens()

    def training_lengths(self) -> tuple:
        return (self.min_length(), 256)

    def max_tokens(self, length: int) -> int:
        return length + len(str(KEYS[1])) + 1

    def draw_depth(self, rng: np.random.Generator) -> float:
        return float(rng.uniform()) if self.depth == -1 else float(self.depth)

    def example(self, rng: np.random.Generator, length: int) -> Example:
        self.check_length(length)
        key = int(rng.integers(KEYS[0], KEYS[1] + 1))
        needle = self.needle(key)
        n_filler = length - len(INSTRUCTION) - len(needle) - len(self.query())
        cut = round(self.draw_depth(rng) * n_filler)
        text = filler(n_filler)
        return Example(INSTRUCTION + tuple(text[:cut]) + needle + tuple(text[cut:]) + self.query(), digits(key))


@dataclasses.dataclass(frozen=True)
class Multikey(Passkey):
    num_keys: int = 4  # needles of distinct names; one is asked for

    def symbols(self) -> tuple:
        return tuple(dict.fromkeys(super().symbols() + self.needle_of("Alice", 0) + self.query_of("Alice") + NAMES))

    def needle_of(self, name: str, key: int) -> tuple:
        return ("The", "special", "magic", "number", "for", name, "is", ":", *digits(key), ".")

    def query_of(self, name: str) -> tuple:
        return ("What", "is", "the", "special", "magic", "number", "for", name, "?", "The", "special", "magic",
                "number", "for", name, "is", ":")  # fmt: skip

    def check(self) -> None:
        super().check()
        if not 1 <= self.num_keys <= len(NAMES):
            raise TaskError(f"task={self.name}'s num_keys is 1 to {len(NAMES)}, not {self.num_keys}.")

    def fixed_tokens(self) -> int:
        return len(INSTRUCTION) + self.num_keys * len(self.needle_of("Alice", KEYS[1])) + len(self.query_of("Alice"))

    def example(self, rng: np.random.Generator, length: int) -> Example:
        self.check_length(length)
        names = [NAMES[i] for i in rng.choice(len(NAMES), self.num_keys, replace=False)]
        keys = [int(k) for k in rng.integers(KEYS[0], KEYS[1] + 1, self.num_keys)]
        needles = [self.needle_of(n, k) for n, k in zip(names, keys)]
        query = self.query_of(names[0])  # the asked needle is the first drawn
        n_filler = length - len(INSTRUCTION) - sum(map(len, needles)) - len(query)
        cuts = [round(self.draw_depth(rng) * n_filler)] + [
            int(c) for c in rng.integers(0, n_filler + 1, self.num_keys - 1)
        ]
        text, prompt, at = filler(n_filler), list(INSTRUCTION), 0
        # Needles in the order of their places; at one place, the asked needle first.
        for i in sorted(range(self.num_keys), key=lambda i: (cuts[i], i)):
            prompt += text[at : cuts[i]] + list(needles[i])
            at = cuts[i]
        return Example(tuple(prompt + text[at:]) + query, digits(keys[0]))
