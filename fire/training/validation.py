"""Validation during training, scored by the length sweep's scorer on the training mesh: a
language-modelling run's mean loss on the validation split at the training length (protocol
``stream``); a task run's loss and teacher-forced exact match on a fixed set of examples
spread over its training lengths."""

import math

import flax.linen as nn
import jax
import numpy as np

from fire import data as fire_data
from fire.config import task_of
from fire.data import Protocol
from fire.evaluation.scoring import padded_batches
from fire.tasks.base import validation_rng
from fire.tasks.batches import example_row
from fire.training.sharding import RULES, batch_sharding, data_parallel_size
from fire.training.step import TrainingSetup
from fire.utils import round_up


class _Examples:
    """A task's validation set as windows: ``eval_examples`` rows, example ``k`` at length
    ``min_len + k mod n`` (``n`` lengths in the curriculum), drawn from
    :func:`fire.tasks.base.validation_rng`: the same set at every validation and in every run."""

    def __init__(self, task, block, seq_len: int):
        n = block.max_len - block.min_len + 1
        rows = [
            example_row(task, validation_rng(block.min_len + k % n, k // n), block.min_len + k % n, seq_len)
            for k in range(block.eval_examples)
        ]
        tokens = np.stack([t for t, _ in rows])
        self.inputs, self.targets = tokens[:, :-1], tokens[:, 1:]
        self.weights = np.stack([w for _, w in rows])
        self.n_tokens = int(self.weights.sum())


class Validation:
    """``params -> {'eval_loss', 'eval_ppl'}`` for language modelling; ``params ->
    {'eval_loss', 'eval_exact_match', 'eval_token_accuracy'}`` for a task (the loss per answer
    token, EOS included; exact match: the share of examples whose every answer token and EOS
    is the model's most likely next token given the gold prefix, which for greedy decoding
    is the same as generating the answer). :meth:`line` says it in words."""

    def __init__(self, run: TrainingSetup):
        config = run.config
        self.run, self.task = run, task_of(config)
        if self.task is None:
            windows = fire_data.eval_windows(
                config.data, run.tokenizer, config.train_len, Protocol("stream", eval_tokens=config.eval_tokens)
            )
        else:
            windows = _Examples(self.task, config.task, config.train_len)
        dp = data_parallel_size(run.mesh)
        self.batches = list(
            padded_batches(windows, round_up(max(config.batch_size // config.grad_accum_steps, dp), dp))
        )
        self.n_tokens, self.n_rows = windows.n_tokens, len(windows.inputs)

    def __call__(self, params) -> dict:
        sharding = batch_sharding(self.run.mesh)
        total, count, exact, correct = 0.0, 0.0, 0, 0.0
        with jax.set_mesh(self.run.mesh), nn.logical_axis_rules(RULES):
            for batch in self.batches:
                arrays = [jax.make_array_from_callback(v.shape, sharding, lambda idx, v=v: v[idx]) for v in batch]
                nll_T, weight_T, *per_row = self.run.score_step(params, *arrays)
                total, count = total + float(nll_T.sum()), count + float(weight_T.sum())
                if per_row:
                    correct_B, weight_B = (np.asarray(x) for x in per_row)
                    real_B = weight_B > 0  # a padding row weighs nothing
                    exact += int(((correct_B == weight_B) & real_B).sum())
                    correct += float(correct_B.sum())
        loss = total / count
        if self.task is None:
            return {"eval_loss": loss, "eval_ppl": math.exp(min(loss, 50.0))}
        return {"eval_loss": loss, "eval_exact_match": exact / self.n_rows, "eval_token_accuracy": correct / count}

    def line(self, metrics: dict) -> str:
        """The validation's numbers in words, for the progress log."""
        config = self.run.config
        if self.task is None:
            return (
                f"validation at {config.train_len}: loss {metrics['eval_loss']:.4f}, ppl {metrics['eval_ppl']:.2f} "
                f"({self.n_tokens} tokens)"
            )
        block = config.task
        return (
            f"validation of task={self.task.name} at {block.min_len}-{block.max_len} {self.task.length_unit}: "
            f"exact match {metrics['eval_exact_match']:.1%} (teacher-forced), token accuracy "
            f"{metrics['eval_token_accuracy']:.1%}, loss {metrics['eval_loss']:.4f} ({self.n_rows} examples)"
        )
