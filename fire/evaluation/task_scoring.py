"""Scoring a trained model on a task at one length: a fixed test set, the answer decoded
greedily with the KV cache, exact match and per-token accuracy.

The test set of ``(task, length)`` is a pure function of the evaluation seed: example ``k``
is drawn from the seed sequence ``(eval_seed, length, k)`` (``fire.tasks.base.test_rng``),
apart from every training example's, so every model meets the same examples and a smaller
set is a prefix of a larger one.

An answer is scored with its EOS: the gold sequence is ``answer EOS``; the prediction is the
tokens generated after the prompt (greedy, ``fire.model.generate``, stopping at EOS). Exact
match: the prediction through its first EOS equals the gold sequence. Per-token accuracy: the
fraction of gold positions where the generated token equals the gold one (free-running, so a
slip early can cost the tokens after it). With position ids other than ``0..T-1``
(randomized positions) the answer is scored teacher-forced instead
(:func:`score_task_teacher_forced`): the same exact match, a per-token accuracy given the gold
prefix.
"""

import dataclasses
import functools
from typing import Callable

import numpy as np

from fire import xla
from fire.evaluation.scoring import logits_chunk_tokens, make_score_fn
from fire.model import Transformer
from fire.model.generate import generate
from fire.tasks import Example, Task
from fire.tasks.base import test_rng
from fire.tasks.batches import example_tokens


def evaluation_examples(task: Task, length: int, n_examples: int, eval_seed: int) -> list:
    """``n_examples`` examples of ``length``, the same for every model (see the module doc).

    Raises:
      TaskError: a length the task cannot make."""
    task.check_length(length)
    return [task.example(test_rng(eval_seed, length, k), length) for k in range(n_examples)]


@dataclasses.dataclass
class TaskScore:
    """Sums over a test set; the rates are their ratios."""

    n_examples: int = 0
    exact: int = 0  # examples whose whole answer (and EOS) was generated
    n_answer_tokens: int = 0  # gold tokens, EOS included
    correct_tokens: int = 0

    @property
    def exact_match(self) -> float:
        return self.exact / self.n_examples

    @property
    def token_accuracy(self) -> float:
        return self.correct_tokens / self.n_answer_tokens

    def add(self, other: "TaskScore") -> "TaskScore":
        return TaskScore(*(a + b for a, b in zip(dataclasses.astuple(self), dataclasses.astuple(other))))


def compare(new_BxN: np.ndarray, golds: list, eos_id: int) -> TaskScore:
    """Scores generated tokens ``new_BxN`` (each row: the tokens after its prompt, EOS-filled
    past its end) against ``golds`` (each the gold ids, ``answer EOS``)."""
    score = TaskScore()
    for row, gold in zip(np.asarray(new_BxN), golds):
        n = len(gold)
        ends = np.flatnonzero(row == eos_id)
        predicted = row[: ends[0] + 1] if len(ends) else row
        shown = np.concatenate([row, np.full(max(0, n - len(row)), -1)])[:n]
        score = score.add(TaskScore(1, int(np.array_equal(predicted, gold)), n, int((shown == gold).sum())))
    return score


def score_task(model, params, task: Task, examples: list, batch_size: int = 64, impl: str = "dense") -> TaskScore:
    """Greedy decoding of every example's answer with the KV cache, scored by :func:`compare`.

    Examples are decoded in batches of equal prompt length (the last padded to the others' size by
    repeating its first row, so a prompt length compiles once); each batch may generate up to the
    longest gold answer of the set (EOS included).

    Raises:
      GenerationError, LengthError: a total length the model cannot decode (``learned``'s table).
    """
    vocab = task.vocabulary
    prompts = [vocab.encode_symbols(e.prompt) for e in examples]
    golds = [np.append(vocab.encode_symbols(e.answer), np.int32(vocab.eos_id)) for e in examples]
    budget = max(len(g) for g in golds)  # past the longest gold, no answer can still be exact
    by_prompt = {}
    for i, prompt in enumerate(prompts):
        by_prompt.setdefault(len(prompt), []).append(i)
    score = TaskScore()
    for prompt_len, members in sorted(by_prompt.items()):
        for start in range(0, len(members), batch_size):
            chunk = members[start : start + batch_size]
            rows = [prompts[i] for i in chunk]
            prompt_BxP = np.stack(rows + [rows[0]] * (min(batch_size, len(members)) - len(rows)))
            out = generate(model, params, prompt_BxP, budget, impl=impl, eos_id=vocab.eos_id)
            new_BxN = np.asarray(out.tokens_BxS)[: len(chunk), prompt_len:]
            score = score.add(compare(new_BxN, [golds[i] for i in chunk], vocab.eos_id))
    return score


@functools.lru_cache(maxsize=8)
def _per_row_scorer(cfg, impl: str):
    """The per-row scorer of a model config, jitted once (its shapes compile as they come)."""
    return xla.jit(make_score_fn(Transformer(cfg), impl, logits_chunk_tokens(cfg.vocab_size), per_row=True))


def score_task_teacher_forced(model, params, task: Task, examples: list, position_ids: Callable,
                              batch_size: int = 64, impl: str = "dense") -> TaskScore:  # fmt: skip
    """Every example's answer scored in one forward pass over ``prompt answer EOS``: exact
    where every answer token and the EOS is the most likely next token given the gold prefix,
    which is exactly when greedy decoding generates the answer (so ``exact`` equals
    :func:`score_task`'s); ``correct_tokens`` counts the targets predicted right given the
    gold prefix (teacher-forced: not greedy's count, which compares free-running tokens). ``position_ids(length, rows)``
    gives the int32 ``[len(rows), length]`` position ids of the examples ``rows`` (indices
    into ``examples``) whose inputs have ``length`` tokens: how randomized positions reach a
    task, since the KV cache decodes at ``0..T-1``."""
    vocab = task.vocabulary
    rows = [example_tokens(vocab, e) for e in examples]
    by_length = {}
    for i, row in enumerate(rows):
        by_length.setdefault(len(row) - 1, []).append(i)
    score_fn = _per_row_scorer(model.cfg, impl)
    score = TaskScore()
    for length, members in sorted(by_length.items()):
        for start in range(0, len(members), batch_size):
            chunk = members[start : start + batch_size]
            tokens_BxW = np.stack([rows[i] for i in chunk])
            weights_BxT = np.zeros((len(chunk), length), np.float32)
            for b, i in enumerate(chunk):
                weights_BxT[b, len(examples[i].prompt) - 1 :] = 1.0  # answer[0] .. EOS
            out = score_fn(params, tokens_BxW[:, :-1], tokens_BxW[:, 1:], weights_BxT, position_ids(length, chunk))
            correct_B, weight_B = (np.asarray(x) for x in out[-2:])
            score = score.add(TaskScore(len(chunk), int((correct_B == weight_B).sum()), int(weight_B.sum()),
                                        int(correct_B.sum())))  # fmt: skip
    return score


__all__ = ["Example", "TaskScore", "compare", "evaluation_examples", "score_task", "score_task_teacher_forced"]
