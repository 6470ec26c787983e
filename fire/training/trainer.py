"""The training loop: sharded at init, jitted with donation, resumable, preemption-safe.

Resume precedence: (1) the workdir's latest checkpoint (parameters, optimizer state, step
and data position); (2) else ``init_from`` (another run's weights only); (3) else a fresh
initialisation from ``seed``. The data order and randomized positions (``train_positions``)
follow ``data_seed`` (-1: ``seed``).
"""

import contextlib
import dataclasses
import json
import math
import os
import signal
import threading
import time
from typing import Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from jax.experimental import multihost_utils
from jax.sharding import NamedSharding, PartitionSpec

from fire import config as fire_config
from fire import data as fire_data
from fire import workdir as workdir_lib
from fire import xla
from fire.checkpoint import Checkpointer, abstract_like, fingerprints, latest_step, restore_params, step_folders
from fire.config import from_axes
from fire.data import Protocol
from fire.errors import ConfigError, NonFiniteLossError, Preempted
from fire.evaluation.scoring import logits_chunk_tokens, make_score_fn, padded_batches
from fire.model import ModelConfig, Transformer, encoding_summary, token_nll, train_flops_per_token
from fire.training import optim, positions
from fire.training.metrics import MetricsWriter, Progress, log
from fire.training.optim import learning_rate_schedule, make_optimizer
from fire.training.sharding import RULES, batch_sharding, data_parallel_size, make_mesh
from fire.utils import format_duration, round_up, to_mib
from fire.workdir import Workdir, WorkdirError

# Keys that may change between a run and its resumption without making it another run.
RESUMABLE_CHANGES = (
    "num_steps", "log_every", "eval_every", "checkpoint_every", "keep_checkpoints", "init_from", "mesh",
    "peak_flops", "data.num_workers", "data.data_dir", "name",
)  # fmt: skip


# Compared as where the learning-rate schedule ends (decay_steps, 0: num_steps), not as set.
SCHEDULE_END = "optimizer.decay_steps"


def data_seed(config) -> int:
    """The seed of the training stream's order and randomized positions."""
    return config.seed if config.data_seed == -1 else config.data_seed


# Run-level counts that must be at least 1.
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
    model_config(config, vocab_size=1).build_encoding()  # the model block and encoding options
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


def model_config(config, vocab_size: int) -> ModelConfig:
    """The model of a run config, with the largest training position id its encoding must
    hold. Raises ConfigError for model values it cannot honour."""
    return dataclasses.replace(
        ModelConfig.from_run_config(config, vocab_size), max_position=positions.max_position(config)
    )


def _flatten(d, prefix=""):
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        out.update(_flatten(v, key + ".") if isinstance(v, dict) else {key: v})
    return out


def check_workdir(config, workdir: str) -> None:
    """A workdir holds one run: refuse a config that differs in anything but bookkeeping, once
    the run has a checkpoint (before that, nothing is lost by starting afresh: a failed first
    start does not tie the workdir to its config). Fields the saved config has and this
    version's does not are not read, so not compared; fields this version added are compared
    with their defaults."""
    paths = Workdir(workdir)
    if not paths.is_run():
        return
    try:
        saved = _flatten(paths.read_config_dict())
    except (OSError, ValueError) as e:
        raise WorkdirError(f"{paths.config} cannot be read ({e}); the workdir is not a run this can resume.") from None
    current = _flatten(json.loads(config.to_json_best_effort()))
    # A field added after the run started ran with its behaviour-preserving default.
    defaults = _flatten(json.loads(from_axes(f"pe={config.pe}").to_json_best_effort()))
    saved.update({k: defaults[k] for k in current if k not in saved and k in defaults})
    # num_steps only says when to stop; where the learning-rate schedule ends must not move.
    for flat in (saved, current):
        flat[SCHEDULE_END] = optim.schedule_end(flat[SCHEDULE_END], flat["num_steps"])
    changed = sorted(
        (k for k in current if saved.get(k) != current[k] and not k.startswith(RESUMABLE_CHANGES)),
        key=lambda k: (k.count("."), k),  # top-level keys (pe, size, ...) first
    )
    if changed and not step_folders(paths.checkpoints):
        # A start that failed before its first checkpoint left nothing to resume: the
        # corrected command is a new start, not another run.
        log(f"{paths.config} is from a start that saved no checkpoint; replacing it.")
        return
    if changed == [SCHEDULE_END]:
        end, new_end = saved[SCHEDULE_END], current[SCHEDULE_END]
        raise ConfigError(
            f"{workdir} holds a run whose learning-rate schedule ends at step {end}, and this config's ends at "
            f"step {new_end} (optimizer.decay_steps, 0: num_steps): resuming would change the rate mid-run. To "
            f"train on at the schedule's final rate, keep its end: "
            f"--config.optimizer.decay_steps={end} --config.num_steps={config.num_steps}; for a new run with a new "
            f"schedule, start from its weights with --config.init_from={workdir} and a new --workdir."
        )
    if changed:
        details = "; ".join(f"{k}: {saved.get(k)!r} -> {current.get(k)!r}" for k in changed[:6])
        raise ConfigError(
            f"{workdir} holds a run with a different config ({details}). "
            f"Use a new --workdir, or start from its weights with --config.init_from={workdir}."
        )


class Preemption:
    """SIGTERM (a preemption notice) and Ctrl-C (SIGINT) set a flag; the loop saves and exits
    at the next step boundary, all processes at the same step. A second Ctrl-C exits at once
    (KeyboardInterrupt), without saving."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self):
        self.requested = None  # the first signal received
        self.previous = {}
        if threading.current_thread() is threading.main_thread():  # handlers only install there
            self.previous = {s: signal.signal(s, self._handle) for s in self.SIGNALS}

    def _handle(self, signum, frame):
        if signum == signal.SIGINT and self.requested is not None:
            signal.signal(signal.SIGINT, signal.default_int_handler)
            raise KeyboardInterrupt("a second Ctrl-C: stopped at once, without saving")
        self.requested = self.requested or signal.Signals(signum)
        if signum == signal.SIGINT and jax.process_index() == 0:
            # os.write, not print: a handler may interrupt a print to the same stream.
            os.write(1, b"Ctrl-C: saving at the end of this step, then stopping (Ctrl-C again to stop at once).\n")

    def reached(self) -> bool:
        if jax.process_count() == 1:
            return self.requested is not None
        return bool(multihost_utils.process_allgather(np.array(self.requested is not None)).any())

    @property
    def interrupted(self) -> bool:
        """Stopped by Ctrl-C (not a preemption notice)."""
        return self.requested == signal.SIGINT

    def restore(self):
        for s, handler in self.previous.items():
            signal.signal(s, handler)


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
    score_step: object  # fire.evaluation.scoring's score function, jitted on the mesh


def build(config, vocab_size: Optional[int] = None) -> TrainingSetup:
    """The mesh, model, sharded state and jitted steps of ``config``. ``vocab_size`` plans
    without the data: no tokenizer is built (``tokenizer`` is then None)."""
    mesh = make_mesh(config.mesh.to_dict())
    check_config(config, mesh)
    tokenizer = None if vocab_size else fire_data.get_tokenizer(config.data)
    model_cfg = model_config(config, vocab_size or tokenizer.vocab_size)
    model_cfg.build_encoding()  # unknown or impossible encoding options fail here, before compute
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

    def loss_fn(params, inputs_BxT, targets_BxT, positions_BxT=None):
        logits = model.apply({"params": params}, inputs_BxT, positions_BxT)
        return token_nll(logits, targets_BxT).mean()

    def train_step(state, batch):
        params = state["params"]
        grad_fn = jax.value_and_grad(loss_fn)
        micro_batch = (batch["inputs"], batch["targets"])
        if randomize:
            B, T = batch["inputs"].shape
            positions_BxT = positions.random_positions(seed, state["step"], jnp.arange(B), T, max_position)
            micro_batch += (jax.lax.with_sharding_constraint(positions_BxT, NamedSharding(mesh, data_spec)),)
        if accum == 1:
            loss, grads = grad_fn(params, *micro_batch)
        else:
            # Micro-batch k takes rows k, k + accum, ...: each device keeps its own rows.
            def split(x_BxT):
                x = x_BxT.reshape(-1, accum, x_BxT.shape[-1]).swapaxes(0, 1)
                return jax.lax.with_sharding_constraint(x, NamedSharding(mesh, PartitionSpec(None, ("data", "fsdp"))))

            def micro_step(carry, micro):
                loss, grads = grad_fn(params, *micro)
                return jax.tree_util.tree_map(jnp.add, carry, (loss, grads)), None

            zeros = (jnp.zeros((), jnp.float32), jax.tree_util.tree_map(jnp.zeros_like, params))
            (loss, grads), _ = jax.lax.scan(micro_step, zeros, tuple(split(x) for x in micro_batch))
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
            make_score_fn(model, model_cfg.attention, logits_chunk_tokens(model_cfg.vocab_size)),
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


def initial_state(run: TrainingSetup, checkpointer: Checkpointer, iterator):
    """The state to start from: the newest usable checkpoint (a newer one that cannot be used is
    moved aside, with a message), else ``init_from``'s weights, else a fresh initialisation."""
    config = run.config
    restored = checkpointer.restore_latest(run.abstract_state, log)
    if restored is not None:
        state, data_state, step = restored
        iterator.set_state(data_state)
        log(f"Resumed from {checkpointer.directory} at step {step}.")
        return state
    state = run.init_fn(jax.random.key(config.seed))
    if config.init_from:
        params, from_step = restore_params(config.init_from, run.abstract_state["params"], log=log)
        state = {**state, "params": params}
        log(f"Initialised weights from {config.init_from} (step {from_step}); optimizer and data start fresh.")
    return state


def compile_step(run: TrainingSetup, state=None, batch=None):
    """Compiles the train step ahead of the loop and reports its memory. Without ``state``
    and ``batch`` it compiles for their shapes alone (a memory plan, nothing allocated)."""
    t0 = time.perf_counter()
    if batch is None:
        shape = (run.config.batch_size, run.config.train_len)
        token = jax.ShapeDtypeStruct(shape, jnp.int32, sharding=batch_sharding(run.mesh))
        batch = {"inputs": token, "targets": token}
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


@contextlib.contextmanager
def _hold(workdir: str):
    """The workdir for this run alone (``fire.workdir.exclusive``), taken by process 0; every
    process fails together if it cannot be taken."""
    if jax.process_count() == 1:
        with workdir_lib.exclusive(workdir, log):
            yield
        return
    with contextlib.ExitStack() as stack:
        error = None
        if jax.process_index() == 0:
            try:
                stack.enter_context(workdir_lib.exclusive(workdir, log))
            except WorkdirError as e:
                error = e
        if not multihost_utils.process_allgather(np.array(error is None)).all():
            raise error or WorkdirError(f"Process 0 could not take the workdir {workdir}; see its output.")
        yield


def train(config, workdir: str) -> dict:
    """Trains ``config`` in ``workdir`` (resuming if it holds checkpoints); returns the final
    metrics.

    Every value of ``config`` and the workdir's path are checked before any compute and before
    anything is written; then the workdir is held for this process alone (released on any
    exit). A failure of the run itself (a full disk, NaN, a damaged checkpoint with no usable
    older one) is a :class:`fire.errors.UserError` with one line saying what to do. Ctrl-C
    saves at the step boundary, then raises KeyboardInterrupt; a preemption notice (SIGTERM)
    saves there too, then raises :class:`fire.errors.Preempted` (the run is not finished:
    calling ``train`` again resumes it).
    """
    if not str(workdir or "").strip():
        raise WorkdirError("The workdir is empty: give --workdir=DIR, where the run's files go.")
    check_config(config, make_mesh(config.mesh.to_dict()))
    Workdir(workdir).check_usable()
    with _hold(workdir):
        check_workdir(config, workdir)
        run = build(config)
        fire_data.prepare(config.data, run.tokenizer)
        iterator = fire_data.train_iterator(
            config.data,
            run.tokenizer,
            config.train_len,
            config.batch_size,
            data_seed(config),
            jax.process_index(),
            jax.process_count(),
        )
        resources = contextlib.ExitStack()
        resources.callback(iterator.close)
        try:
            validation = Validation(run)
            checkpointer = Checkpointer(workdir, config.keep_checkpoints)
            resources.callback(checkpointer.manager.close)
            state = initial_state(run, checkpointer, iterator)
            if jax.process_index() == 0:
                Workdir(workdir).write_run_info(config)
            writer = MetricsWriter(workdir, int(state["step"]))
            resources.callback(writer.close)
            preemption = Preemption()
            resources.callback(preemption.restore)
            final = _loop(run, workdir, state, iterator, validation, checkpointer, writer, preemption)
            checkpointer.wait()  # a failed last save is reported, not lost in cleanup
        except BaseException:
            with contextlib.suppress(Exception):  # the error in flight is the one to report
                resources.close()
            raise
        resources.close()
        return final


def _loop(run, workdir, state, iterator, validation, checkpointer, writer, preemption) -> dict:
    config = run.config
    step = int(state["step"])
    log(
        f"{config.pe} | {config.size} | train_len {config.train_len} | {run.model_cfg.num_layers} layers, "
        f"d {run.model_cfg.d_model} | {sum(x.size for x in jax.tree_util.tree_leaves(state['params'])):,} params | "
        f"mesh {dict(run.mesh.shape)} | {jax.process_count()} process(es) | workdir {workdir}"
    )
    if step >= config.num_steps:
        log(f"Already trained to step {step} (num_steps {config.num_steps}).")
        return {}
    tokens_per_step = config.batch_size * config.train_len
    progress = Progress(
        config.num_steps,
        tokens_per_step,
        train_flops_per_token(run.model_cfg, config.train_len) * tokens_per_step,
        config.peak_flops * jax.device_count(),
    )
    batch = global_batch(run, next(iterator))
    train_step = compile_step(run, state, batch)
    last_saved = checkpointer.latest_step()
    pending = None  # (step, metrics) of the step in flight: read after the next is dispatched
    final = {}
    t_start = time.perf_counter()
    progress.start(step)

    def kept() -> str:
        newest = checkpointer.latest_step()
        where = f"step {newest} in {checkpointer.directory}" if newest is not None else "none was saved"
        return f"The last good checkpoint is kept ({where}). Lower optimizer.lr or raise warmup_steps."

    def finish(step_done, metrics_done):
        """Host-side work for a dispatched step: NaN guard and logs."""
        loss, grad_norm = float(metrics_done["loss"]), float(metrics_done["grad_norm"])
        if not (math.isfinite(loss) and math.isfinite(grad_norm)):
            what = f"The loss became {loss}" if not math.isfinite(loss) else f"The gradient norm became {grad_norm}"
            note = ""
            if last_saved is not None and last_saved == step_done - 1:
                # The checkpoint this step started from is finite but leads straight to NaN:
                # not a state to resume or take weights from.
                note = f" Step {last_saved} led straight to it, so its checkpoint was moved to "
                note += f"{checkpointer.set_aside(last_saved)}."
            raise NonFiniteLossError(f"{what} at step {step_done}; stopping.{note} {kept()}")
        if step_done % config.log_every == 0 or step_done == config.num_steps:
            scalars = {k: float(v) for k, v in jax.device_get(metrics_done).items()}
            scalars.update(progress.rates(step_done))
            log(progress.line(step_done, scalars))
            writer.write(step_done, scalars)
            final.update(scalars)

    while step < config.num_steps:
        state, metrics = train_step(state, batch)
        step += 1
        if pending is not None:
            finish(*pending)
        pending = (step, metrics)
        last = step == config.num_steps
        evaluate = last or (config.eval_every and step % config.eval_every == 0)
        preempted = preemption.reached()
        save = last or preempted or step % config.checkpoint_every == 0
        if evaluate or save:
            finish(*pending)  # the loss going into this step's update must be finite
            pending = None
        if save:
            # The loss above was computed before this step's update: what is saved is the
            # state after it, so that is what must be finite.
            meta = {"fingerprints": fingerprints(state)}
            if not all(item["finite"] for item in meta["fingerprints"].values()):
                raise NonFiniteLossError(
                    f"The parameters or optimizer state became NaN or Inf in step {step}'s update (its loss and "
                    f"gradient were finite); stopping without saving it. {kept()}"
                )
        if evaluate:
            ev = validation(state["params"])
            log(
                f"step {step} | validation at {config.train_len}: loss {ev['eval_loss']:.4f}, "
                f"ppl {ev['eval_ppl']:.2f} ({validation.n_tokens} tokens)"
            )
            writer.write(step, ev)
            final.update(ev)
            progress.start(step)  # keep evaluation out of the throughput
        if save:
            checkpointer.save(step, state, iterator.get_state(), meta)
            last_saved = step
        if preempted and not last:
            checkpointer.wait()
            how = "Ctrl-C" if preemption.interrupted else "Preempted"
            log(f"{how}: saved step {step} to {checkpointer.directory}; re-run the same command to resume.")
            if preemption.interrupted:
                raise KeyboardInterrupt(f"saved step {step}; re-run the same command to resume")
            raise Preempted(f"saved step {step} to {checkpointer.directory}; re-run the same command to resume", step)
        if not last:
            batch = global_batch(run, next(iterator))
    checkpointer.finish()
    log(
        f"Done: {step} steps in {format_duration(time.perf_counter() - t_start)}; checkpoints in "
        f"{checkpointer.directory}."
    )
    return final
