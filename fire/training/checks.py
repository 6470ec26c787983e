"""The checks of a run config, once per run, before any compute and before anything is
written: every value against its key's declaration (``fire.config``), then what the values
need of each other, of the devices and of the filesystem."""

import jax

from fire import config as fire_config
from fire.checkpoint import latest_step
from fire.data.config import DATA
from fire.data.config import check_relations as check_data_relations
from fire.encodings import encoding_class, resolved_options
from fire.errors import ConfigError
from fire.keys import flatten
from fire.model import ModelConfig
from fire.tasks.batches import check_curriculum
from fire.training.sharding import data_parallel_size, make_mesh


def check_config(config) -> jax.sharding.Mesh:
    """Checks ``config`` and returns the device mesh it asks for.

    In order: each value against its key (:func:`fire.config.check`: the axes, counts, seeds,
    the optimizer, model, encoding, data and mesh blocks); the data block's files; the mesh
    against the devices; the model block's shape (heads that divide ``d_model``); the
    encoding against the training length, the largest training position id and the head
    width; the decay's end against the warmup; the batch against the micro-batches, the data
    axis, the processes and the tensor axis; ``init_from``'s checkpoint.

    Raises:
      ConfigError (or another UserError: DataError, MeshError, UnknownEncodingError): one line
        naming the value and what it accepts.
    """
    fire_config.check(config)
    check_data_relations(config.data)
    _check_task(config)
    mesh = make_mesh(config.mesh.to_dict())
    model = ModelConfig.from_run_config(config, vocab_size=1)  # raises for a shape it cannot build
    options = resolved_options(config.pe, config.encoding)
    encoding_class(config.pe).check(options, config.train_len, fire_config.max_position(config), model.dim_per_head)
    opt = config.optimizer
    if 0 < opt.decay_steps <= opt.warmup_steps:
        raise ConfigError(
            f"optimizer.decay_steps {opt.decay_steps} must be past warmup_steps {opt.warmup_steps}, or the decay would "
            f"take one step (0: num_steps)."
        )
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
    return mesh


def _check_task(config) -> None:
    """A task run: a data block left as it is (the task makes its own examples), a
    curriculum in order whose lengths the task can make, rows that hold its longest example.

    Raises:
      ConfigError: a data option; TaskError: a length range or options the task cannot serve
        (``fire.tasks.batches.check_curriculum``).
    """
    task = fire_config.task_of(config)
    if task is None:
        return
    for name, key in flatten(DATA).items():
        if name != "data_dir" and config.data[name] != key.default:
            raise ConfigError(
                f"task={task.name} trains on its own examples: drop --config.data.{name} (data options are for "
                f"language modelling, task='')."
            )
    check_curriculum(task, config.task.min_len, config.task.max_len, config.train_len)
