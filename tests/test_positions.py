"""Randomized training positions and the data seed: the ids, the checks, training and resume."""

import json
import os
import signal

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import final_params

import fire.data.pipeline as pipeline
from fire.checkpoint import Checkpointer
from fire.config import data_seed, from_axes, max_position
from fire.encodings import build_encoding
from fire.errors import ConfigError, Preempted
from fire.training import build, train
from fire.training.positions import random_positions
from fire.training.resume import check_workdir
from fire.workdir import Workdir


def config_for(corpus, pe="fire", randomize=True, **overrides):
    config = from_axes(f"pe={pe},data=text_dir,smoke")
    config.data.path, config.data.data_dir = str(corpus), str(corpus / "_cache")
    config.train_positions.randomize = randomize
    config.update_from_flattened_dict(
        {"batch_size": 8, "num_steps": 8, "log_every": 1, "eval_every": 0, "checkpoint_every": 4, "mesh.data": 1,
         **overrides}
    )  # fmt: skip
    return config


# ---------------------------------------------------------------- the ids


def test_positions_are_sorted_samples_and_a_pure_function_of_seed_step_row():
    B, T, M = 4, 16, 64
    p = np.asarray(random_positions(0, 3, jnp.arange(B), T, M))
    assert p.shape == (B, T) and p.dtype == np.int32
    assert (np.diff(p, axis=1) > 0).all() and p.min() >= 0 and p.max() < M
    assert len({tuple(row) for row in p}) == B  # rows differ
    assert not np.array_equal(p, random_positions(0, 4, jnp.arange(B), T, M))  # steps differ
    assert not np.array_equal(p, random_positions(1, 3, jnp.arange(B), T, M))  # seeds differ
    np.testing.assert_array_equal(p, random_positions(0, 3, jnp.arange(B), T, M))
    # Row by row, and with a traced step (as in the jitted train step), gives the same ids.
    rows = [random_positions(0, 3, jnp.array([r]), T, M)[0] for r in range(B)]
    np.testing.assert_array_equal(p, np.stack(rows))
    np.testing.assert_array_equal(p, jax.jit(lambda s: random_positions(0, s, jnp.arange(B), T, M))(3))
    # Sampling every id of [0, T) leaves the ordinary positions.
    np.testing.assert_array_equal(random_positions(0, 3, jnp.arange(2), T, T), np.tile(np.arange(T), (2, 1)))


def test_max_position_resolves_and_refuses_fewer_ids_than_a_window():
    config = from_axes("pe=fire,smoke", lock=False)
    assert max_position(config) == config.train_len == 64
    config.train_positions.randomize = True
    assert max_position(config) == 16 * 64
    config.train_positions.max_position = 100
    assert max_position(config) == 100
    config.train_positions.max_position = 32
    with pytest.raises(ConfigError, match="max_position 32 is below train_len 64.*at least 64"):
        max_position(config)


def test_learned_check_knows_the_largest_training_position():
    geometry = dict(num_heads=2, head_dim=8, d_model=16, train_len=16)
    with pytest.raises(ConfigError, match="table of 16 positions.*set --config.encoding.max_len to at least 32"):
        build_encoding("learned", {}, max_position=32, **geometry)
    assert build_encoding("learned", {"max_len": 32}, max_position=32, **geometry).table_len == 32
    assert build_encoding("learned", {}, **geometry).table_len == 16  # max_position None: train_len


def test_data_seed_defaults_to_seed_and_old_workdirs_still_resume(tmp_path):
    config = from_axes("pe=fire,smoke", lock=False)
    config.seed = 3
    assert data_seed(config) == 3
    config.data_seed = 5
    assert data_seed(config) == 5 and config.seed == 3
    # A run saved before data_seed and train_positions existed is the same run as their defaults.
    config.data_seed = -1
    Workdir(str(tmp_path)).write_run_info(config)
    saved = Workdir(str(tmp_path)).read_config_dict()
    del saved["data_seed"], saved["train_positions"]
    with open(Workdir(str(tmp_path)).config, "w") as f:
        json.dump(saved, f)
    os.makedirs(os.path.join(Workdir(str(tmp_path)).checkpoints, "4"))  # the old run has a checkpoint
    check_workdir(config, str(tmp_path))
    config.train_positions.randomize = True
    with pytest.raises(ConfigError, match="train_positions.randomize: False -> True"):
        check_workdir(config, str(tmp_path))


# ---------------------------------------------------------------- training


@pytest.mark.slow
def test_randomized_positions_reach_the_model(corpus):
    """One step on the same batch: randomized positions change the loss."""

    def first_step(randomize):
        run = build(config_for(corpus, randomize=randomize))
        state = run.init_fn(jax.random.key(0))
        tokens = jnp.asarray(np.random.default_rng(0).integers(0, 256, (8, 65)), jnp.int32)
        _, metrics = run.train_step(state, {"inputs": tokens[:, :-1], "targets": tokens[:, 1:]})
        return float(metrics["loss"])

    assert first_step(True) != first_step(False)


@pytest.mark.slow
@pytest.mark.parametrize(
    "pe,overrides", [("fire", {"mesh.data": 2, "grad_accum_steps": 2}), ("rope", {})], ids=["fire", "rope"]
)
def test_randomized_training_runs(corpus, tmp_path, pe, overrides):
    final = train(config_for(corpus, pe, num_steps=6, checkpoint_every=100, **overrides), str(tmp_path))
    assert np.isfinite(final["loss"]) and np.isfinite(final["eval_loss"])


@pytest.mark.slow
def test_a_resumed_randomized_run_reproduces_the_uninterrupted_one(corpus, tmp_path, monkeypatch):
    config = config_for(corpus, data_seed=7)
    train(config, str(tmp_path / "whole"))
    # A preemption notice while the batch of step 6 is fetched: the run saves step 6 and stops.
    original = pipeline.TrainIterator.__next__

    def next_or_preempt(self):
        if self.step == 5:
            os.kill(os.getpid(), signal.SIGTERM)
        return original(self)

    monkeypatch.setattr(pipeline.TrainIterator, "__next__", next_or_preempt)
    with pytest.raises(Preempted, match="saved step 6") as stopped:
        train(config, str(tmp_path / "split"))
    assert stopped.value.step == 6
    monkeypatch.setattr(pipeline.TrainIterator, "__next__", original)
    checkpointer = Checkpointer(str(tmp_path / "split"), keep=2)
    assert checkpointer.latest_step() == 6
    checkpointer.close()
    train(config, str(tmp_path / "split"))
    for a, b in zip(final_params(config, str(tmp_path / "whole")), final_params(config, str(tmp_path / "split"))):
        np.testing.assert_array_equal(a, b)


def test_bad_position_and_seed_configs_fail_before_compute(corpus, tmp_path):
    with pytest.raises(ConfigError, match="set --config.encoding.max_len to at least 1024"):
        train(config_for(corpus, "learned"), str(tmp_path / "a"))
    with pytest.raises(ConfigError, match="max_position 32 is below train_len 64"):
        train(config_for(corpus, **{"train_positions.max_position": 32}), str(tmp_path / "b"))
    with pytest.raises(ConfigError, match="^seed must be an integer >= 0, got -1"):
        train(config_for(corpus, seed=-1), str(tmp_path / "c"))
    with pytest.raises(ConfigError, match="data_seed must be an integer >= -1, got -2 .*-1: the same as seed"):
        train(config_for(corpus, data_seed=-2), str(tmp_path / "d"))
    assert not any(os.path.exists(tmp_path / d) for d in "abcd")
