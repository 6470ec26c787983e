"""The checks of a run config, before any compute and before anything is written: every value
a user can set, and the relations between them and the device mesh."""

import dataclasses
import math

import jax

from fire import config as fire_config
from fire import data as fire_data
from fire.checkpoint import latest_step
from fire.errors import ConfigError
from fire.model import ModelConfig
from fire.training import optim, positions
from fire.training.sharding import data_parallel_size

POSITIVE = ("num_steps", "batch_size", "grad_accum_steps", "log_every", "checkpoint_every", "keep_checkpoints",
            "eval_tokens")  # fmt: skip


def _integer(config, key: str, low: int, meaning: str = "") -> None:
    value = config
    for part in key.split("."):
        value = value[part]
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ConfigError(f"{key} must be an integer >= {low}{meaning}, got {value!r}.")


def check_config(config, mesh) -> None:
    """Every value a user can set, checked before any compute and before anything is written:
    the config's axes, the run's counts and seeds, the optimizer, the model and its encoding,
    the data block, the mesh against the batch, and ``init_from``.

    Raises:
      ConfigError (or another UserError: DataError, MeshError, UnknownEncodingError): one line
        naming the value and what it accepts.
    """
    fire_config.check(config)
    for key in POSITIVE:
        _integer(config, key, 1)
    _integer(config, "eval_every", 0, " (0: only at the end)")
    seeds = (config.seed, config.data_seed)
    if any(isinstance(s, bool) or not isinstance(s, int) for s in seeds) or config.seed < 0 or config.data_seed < -1:
        raise ConfigError(
            f"seed must be >= 0 and data_seed >= 0 or -1 (the same as seed), got seed {config.seed} and "
            f"data_seed {config.data_seed}."
        )
    _integer(config, "train_positions.max_position", 0, " (0: 16 x train_len)")
    peak = config.peak_flops
    if isinstance(peak, bool) or not isinstance(peak, (int, float)) or not math.isfinite(peak) or peak <= 0:
        raise ConfigError(f"peak_flops must be a positive number (FLOP/s per device, for MFU), got {peak!r}.")
    optim.check(config.optimizer)
    fire_data.check_config(config.data)
    model = ModelConfig.from_run_config(config, vocab_size=1)  # the model block
    dataclasses.replace(model, max_position=positions.max_position(config)).build_encoding()  # encoding options
    dp = data_parallel_size(mesh)
    micro = config.batch_size // config.grad_accum_steps
    if config.batch_size % config.grad_accum_steps:
        raise ConfigError(
            f"batch_size {config.batch_size} does not divide into grad_accum_steps "
            f"{config.grad_accum_steps} micro-batches."
        )
    if micro % dp:
        raise ConfigError(
            f"The micro-batch of {micro} sequences does not divide over the {dp}-way data axis "
            f"(mesh data x fsdp = {mesh.shape['data']} x {mesh.shape['fsdp']}); choose a batch_size "
            f"that is a multiple of {dp * config.grad_accum_steps}."
        )
    if config.batch_size % jax.process_count():
        raise ConfigError(f"batch_size {config.batch_size} does not divide over {jax.process_count()} processes.")
    tensor = mesh.shape["tensor"]
    if config.model.num_heads % tensor or config.model.d_ff % tensor:
        raise ConfigError(
            f"The {tensor}-way tensor axis must divide num_heads ({config.model.num_heads}) "
            f"and d_ff ({config.model.d_ff})."
        )
    if config.init_from and latest_step(config.init_from) is None:
        raise ConfigError(
            f"init_from={config.init_from} holds no checkpoint to take weights from (a run's workdir is expected)."
        )
