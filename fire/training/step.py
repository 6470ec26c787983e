"""The train step of a run config: the mesh, the model, the sharded state and the jitted
steps (train and score), built once before the loop; and the step compiled ahead of time.

The state is sharded at initialisation (``jax.eval_shape`` of the init, then a jitted init
with the state's shardings); the train step takes the state donated, computes the loss and
gradients over ``grad_accum_steps`` micro-batches (a task run's loss: the mean over the
batch's answer tokens, its ``weights``), applies the AdamW update, and returns the
new state with the step's metrics (loss, gradient norm, learning rate, the encoding's
learned scalars) as device arrays: the loop reads them one step later.
"""

import dataclasses
import time
from typing import Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import optax
from jax.sharding import NamedSharding, PartitionSpec

from fire import xla
from fire.checkpoint import abstract_like
from fire.config import data_seed, is_task_run, tokenizer_of
from fire.config import max_position as fire_max_position
from fire.evaluation.scoring import logits_chunk_tokens, make_score_fn
from fire.model import ModelConfig, Transformer, encoding_summary, token_nll
from fire.training import positions
from fire.training.checks import check_config
from fire.training.metrics import log
from fire.training.optim import learning_rate_schedule, make_optimizer
from fire.training.sharding import RULES, batch_sharding
from fire.utils import to_mib


def model_config(config, vocab_size: int) -> ModelConfig:
    """The model of a run config, with the largest training position id its encoding must
    hold. Raises ConfigError for model values it cannot honour."""
    return dataclasses.replace(ModelConfig.from_run_config(config, vocab_size), max_position=fire_max_position(config))


@dataclasses.dataclass
class TrainingSetup:
    """Everything built from a config, before the loop starts."""

    config: ml_collections.ConfigDict
    mesh: jax.sharding.Mesh
    tokenizer: object
    model_cfg: ModelConfig
    model: Transformer
    state_sharding: dict
    abstract_state: dict
    init_fn: object
    train_step: object
    score_step: object  # fire.evaluation.scoring's score function (per_row for a task), jitted on the mesh


def build(config, vocab_size: Optional[int] = None, checked_mesh: Optional[jax.sharding.Mesh] = None) -> TrainingSetup:
    """The mesh, model, sharded state and jitted steps of ``config``, after checking it
    (:func:`fire.training.checks.check_config`). ``vocab_size`` plans without the data: no
    tokenizer is built (``tokenizer`` is then None).

    ``checked_mesh``: the mesh :func:`~fire.training.checks.check_config` returned for this
    very config, which says that the config was checked: it is then not checked again
    (``train`` checks once, before it takes the workdir). A config that was not checked must
    not pass one.

    Raises:
      UserError: what ``check_config`` raises (not with ``checked_mesh``); a tokenizer that
        cannot be built.
    """
    mesh = check_config(config) if checked_mesh is None else checked_mesh
    tokenizer = None if vocab_size else tokenizer_of(config)
    model_cfg = model_config(config, vocab_size or tokenizer.vocab_size)
    model = Transformer(model_cfg)
    tx = make_optimizer(config.optimizer, config.num_steps)
    schedule = learning_rate_schedule(config.optimizer, config.num_steps)

    def init_boxed(rng):
        params = model.init(rng, jnp.zeros((1, config.train_len), jnp.int32))["params"]
        return {"step": jnp.zeros((), jnp.int32), "params": params, "opt_state": tx.init(params)}

    with jax.set_mesh(mesh), nn.logical_axis_rules(RULES):
        boxed = jax.eval_shape(init_boxed, jax.random.key(0))
        state_sharding = nn.logical_to_mesh_sharding(nn.get_partition_spec(boxed), mesh, RULES)
    abstract_state = abstract_like(nn.meta.unbox(boxed), state_sharding)
    init_fn = xla.jit(lambda rng: nn.meta.unbox(init_boxed(rng)), out_shardings=state_sharding)

    accum = config.grad_accum_steps
    data_spec = PartitionSpec(("data", "fsdp"))
    randomize, seed, max_position = config.train_positions.randomize, data_seed(config), model_cfg.max_position
    weighted = is_task_run(config)  # a task's batch weighs its answer tokens

    def loss_fn(params, micro, total_weight):
        logits = model.apply({"params": params}, micro["inputs"], micro.get("positions"))
        nll_BxT = token_nll(logits, micro["targets"])
        if not weighted:
            return nll_BxT.mean()
        # The mean over the answer tokens of the whole batch: the micro-batches' shares add
        # up to it however the answers fall among them.
        return (nll_BxT * micro["weights"]).sum() / total_weight

    def train_step(state, batch):
        params = state["params"]
        grad_fn = jax.value_and_grad(loss_fn)
        micro_batch = dict(batch)
        total_weight = jnp.maximum(batch["weights"].sum(), 1.0) if weighted else None
        if randomize:
            B, T = batch["inputs"].shape
            positions_BxT = positions.random_positions(seed, state["step"], jnp.arange(B), T, max_position)
            micro_batch["positions"] = jax.lax.with_sharding_constraint(positions_BxT, NamedSharding(mesh, data_spec))
        if accum == 1:
            loss, grads = grad_fn(params, micro_batch, total_weight)
        else:
            # Micro-batch k takes rows k, k + accum, ...: each device keeps its own rows.
            def split(x_BxT):
                x = x_BxT.reshape(-1, accum, x_BxT.shape[-1]).swapaxes(0, 1)
                return jax.lax.with_sharding_constraint(x, NamedSharding(mesh, PartitionSpec(None, ("data", "fsdp"))))

            def micro_step(carry, micro):
                loss, grads = grad_fn(params, micro, total_weight)
                return jax.tree_util.tree_map(jnp.add, carry, (loss, grads)), None

            zeros = (jnp.zeros((), jnp.float32), jax.tree_util.tree_map(jnp.zeros_like, params))
            (loss, grads), _ = jax.lax.scan(micro_step, zeros, {k: split(x) for k, x in micro_batch.items()})
            if not weighted:  # a sum of accum means
                loss, grads = jax.tree_util.tree_map(lambda x: x / accum, (loss, grads))
        updates, opt_state = tx.update(grads, state["opt_state"], params)
        params = optax.apply_updates(params, updates)
        metrics = {
            "loss": loss,
            "grad_norm": optax.tree.norm(grads),
            "lr": schedule(state["step"]),
            **encoding_summary(model_cfg, params),
        }
        return {"step": state["step"] + 1, "params": params, "opt_state": opt_state}, metrics

    batch_shard = NamedSharding(mesh, data_spec)
    replicated = NamedSharding(mesh, PartitionSpec())
    with jax.set_mesh(mesh), nn.logical_axis_rules(RULES):
        train_step = xla.jit(
            train_step,
            in_shardings=(state_sharding, batch_shard),
            out_shardings=(state_sharding, replicated),
            donate_argnums=0,
        )
        score_step = xla.jit(
            make_score_fn(model, model_cfg.attention, logits_chunk_tokens(model_cfg.vocab_size), per_row=weighted),
            in_shardings=(state_sharding["params"], batch_shard, batch_shard, batch_shard),
            out_shardings=replicated,
        )
    return TrainingSetup(
        config, mesh, tokenizer, model_cfg, model, state_sharding, abstract_state, init_fn, train_step, score_step
    )


def global_batch(run: TrainingSetup, local: dict) -> dict:
    """This process's rows -> global arrays sharded over the data axes."""
    sharding = batch_sharding(run.mesh)
    return {k: jax.make_array_from_process_local_data(sharding, v) for k, v in local.items()}


def compile_step(run: TrainingSetup, state=None, batch=None):
    """Compiles the train step ahead of the loop and reports its memory. Without ``state``
    and ``batch`` it compiles for their shapes alone (a memory plan, nothing allocated)."""
    t0 = time.perf_counter()
    if batch is None:
        shape = (run.config.batch_size, run.config.train_len)
        token = jax.ShapeDtypeStruct(shape, jnp.int32, sharding=batch_sharding(run.mesh))
        batch = {"inputs": token, "targets": token}
        if is_task_run(run.config):
            batch["weights"] = jax.ShapeDtypeStruct(shape, jnp.float32, sharding=batch_sharding(run.mesh))
    with jax.set_mesh(run.mesh), nn.logical_axis_rules(RULES):
        compiled = run.train_step.lower(run.abstract_state if state is None else state, batch).compile()
    memory = compiled.memory_analysis()
    if memory is not None:
        log(
            f"Compiled train step in {time.perf_counter() - t0:.1f}s: arguments {to_mib(memory.argument_size_in_bytes)} "
            f"MiB, outputs {to_mib(memory.output_size_in_bytes)} MiB, temporaries "
            f"{to_mib(memory.temp_size_in_bytes)} MiB per device."
        )
    return compiled
