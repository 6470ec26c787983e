"""The training loop: :func:`train` checks, holds the workdir, builds the step and resumes;
then runs the steps.

One iteration, from step ``s`` to ``s + 1``:

1. Dispatch ``train_step(state, batch)``. JAX returns at once; the device computes.
2. Read step ``s``'s metrics (the step before, finished by now): the NaN guard on its loss and
   gradient norm, then the progress line and ``metrics.jsonl`` every ``log_every`` steps. The
   host reads a step's metrics while the next one runs, so it never waits on the device.
3. Ask every process whether a preemption notice or Ctrl-C came (:mod:`preemption`).
4. At a validation (every ``eval_every`` steps and the last) or a save (every
   ``checkpoint_every`` steps, the last, and on a notice): read step ``s + 1``'s metrics now
   (the loss that led to the state about to be used must be finite) and, before a save, check
   the new state itself is finite (parameters and optimizer state).
5. Validate at the training length (kept out of the throughput).
6. Save the checkpoint asynchronously (state and data position together).
7. On a notice: wait for the save, then stop (:class:`fire.errors.Preempted` for SIGTERM,
   KeyboardInterrupt for Ctrl-C).
8. Fetch the next batch (during step ``s + 1``'s compute).

After the last step: wait for its save, prune old checkpoints, report the time.
"""

import contextlib
import dataclasses
import math
import time

import jax
import numpy as np
from jax.experimental import multihost_utils

from fire import data as fire_data
from fire import workdir as workdir_lib
from fire.checkpoint import Checkpointer, fingerprints
from fire.config import data_seed, task_of
from fire.errors import NonFiniteLossError, Preempted
from fire.model import train_flops_per_token
from fire.tasks.batches import TaskBatches
from fire.training.checks import check_config
from fire.training.metrics import MetricsWriter, Progress, log
from fire.training.preemption import Preemption
from fire.training.resume import check_workdir, initial_state
from fire.training.step import build, compile_step, global_batch
from fire.training.validation import Validation
from fire.utils import format_duration
from fire.workdir import Workdir, WorkdirError


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
    mesh = check_config(config)
    Workdir(workdir).check_usable()
    with _hold(workdir):
        check_workdir(config, workdir)
        run = build(config, checked_mesh=mesh)
        iterator = _train_iterator(run)
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


def _train_iterator(run) -> fire_data.TrainIterator:
    """The run's training batches: the data block's packed stream (prepared first), or the
    task's examples (``fire.tasks.batches``), each resumable from its saved state."""
    config = run.config
    task = task_of(config)
    if task is None:
        fire_data.prepare(config.data, run.tokenizer)
        return fire_data.train_iterator(
            config.data,
            run.tokenizer,
            config.train_len,
            config.batch_size,
            data_seed(config),
            jax.process_index(),
            jax.process_count(),
        )
    block = config.task
    batches = TaskBatches(
        task, block.min_len, block.max_len, config.train_len, config.batch_size, data_seed(config),
        jax.process_index(), jax.process_count(),
    )  # fmt: skip
    # What a saved state must match to resume here: the examples of every step.
    identity = dict(
        task=task.name,
        task_options=dataclasses.asdict(task),
        min_len=int(block.min_len),
        max_len=int(block.max_len),
        seed=int(data_seed(config)),
        seq_len=int(config.train_len),
        global_batch_size=int(config.batch_size),
        tokenizer=f"{run.tokenizer.name}:{run.tokenizer.fingerprint}",
    )
    return fire_data.TrainIterator(batches, 0, identity)


def _trained_on(config) -> str:
    task = task_of(config)
    if task is None:
        return f"data {config.data.name}"
    return f"task {task.name} at {config.task.min_len}-{config.task.max_len} {task.length_unit}"


def _loop(run, workdir, state, iterator, validation, checkpointer, writer, preemption) -> dict:
    config = run.config
    step = int(state["step"])
    log(
        f"{config.pe} | {config.size} | {_trained_on(config)} | train_len {config.train_len} | "
        f"{run.model_cfg.num_layers} layers, "
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
        if newest is None:  # no checkpoint ties the workdir to this config
            return "No checkpoint was saved: run again with a lower optimizer.lr or more optimizer.warmup_steps."
        # This workdir resumes only its own config: new values are a new run from these weights.
        return (
            f"The last good checkpoint is kept (step {newest} in {checkpointer.directory}). To train on with a lower "
            f"optimizer.lr or more optimizer.warmup_steps, start a new --workdir with --config.init_from={workdir} "
            f"and the new values."
        )

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
            log(f"step {step} | {validation.line(ev)}")
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
