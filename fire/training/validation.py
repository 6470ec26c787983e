"""Validation during training: the mean loss on the validation split at the training length
(protocol ``stream``), scored by the length sweep's scorer on the training mesh."""

import math

import flax.linen as nn
import jax

from fire import data as fire_data
from fire.data import Protocol
from fire.evaluation.scoring import padded_batches
from fire.training.sharding import RULES, batch_sharding, data_parallel_size
from fire.training.step import TrainingSetup
from fire.utils import round_up


class Validation:
    """Mean loss on the validation split at the training length (protocol ``stream``),
    scored by the length sweep's scorer on the training mesh."""

    def __init__(self, run: TrainingSetup):
        config = run.config
        self.run = run
        windows = fire_data.eval_windows(
            config.data, run.tokenizer, config.train_len, Protocol("stream", eval_tokens=config.eval_tokens)
        )
        dp = data_parallel_size(run.mesh)
        self.batches = list(
            padded_batches(windows, round_up(max(config.batch_size // config.grad_accum_steps, dp), dp))
        )
        self.n_tokens = windows.n_tokens

    def __call__(self, params) -> dict:
        sharding = batch_sharding(self.run.mesh)
        total, count = 0.0, 0.0
        with jax.set_mesh(self.run.mesh), nn.logical_axis_rules(RULES):
            for batch in self.batches:
                arrays = [jax.make_array_from_callback(v.shape, sharding, lambda idx, v=v: v[idx]) for v in batch]
                nll_T, weight_T = self.run.score_step(params, *arrays)
                total, count = total + float(nll_T.sum()), count + float(weight_T.sum())
        loss = total / count
        return {"eval_loss": loss, "eval_ppl": math.exp(min(loss, 50.0))}
