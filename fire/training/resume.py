"""Resuming a run: which workdir a config may continue, and the state it starts from.

Resume precedence: (1) the workdir's latest usable checkpoint (parameters, optimizer state,
step and data position); (2) else ``init_from`` (another run's weights only); (3) else a
fresh initialisation from ``seed``. A workdir holds one run: once it has a checkpoint, a
config that differs in anything but bookkeeping (``RESUMABLE_CHANGES``) is refused, and so is
one that moves the end of a decaying learning-rate schedule (``num_steps`` may grow past it).
"""

import json
from types import SimpleNamespace
from typing import Optional

import jax

from fire.checkpoint import Checkpointer, restore_params, step_folders
from fire.config import from_axes
from fire.errors import ConfigError
from fire.training import optim
from fire.training.metrics import log
from fire.training.step import TrainingSetup
from fire.workdir import Workdir, WorkdirError

# Keys that may change between a run and its resumption without making it another run
# (num_steps only says when to stop: where the schedule ends is compared on its own).
RESUMABLE_CHANGES = (
    "num_steps", "log_every", "eval_every", "checkpoint_every", "keep_checkpoints", "init_from", "mesh",
    "peak_flops", "data.num_workers", "data.data_dir", "name",
)  # fmt: skip

# Compared through where the learning-rate schedule ends (optim.schedule_end), not as set:
# with num_steps it says where the rate stops changing, and a flat decay makes it moot.
SCHEDULE_LENGTH = "optimizer.decay_steps"
SCHEDULE_END = "the schedule's end (optimizer.decay_steps, 0: num_steps)"


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
    with their defaults.

    Raises:
      ConfigError: a config of another run, naming up to six differences; or one whose decaying
        learning-rate schedule would end at another step (``num_steps`` changed with
        ``optimizer.decay_steps`` 0), naming both ways out: keep the end with ``decay_steps``,
        or start a new run with ``init_from``.
      WorkdirError: a ``config.json`` that cannot be read.
    """
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
    end, new_end = (_schedule_end(flat) for flat in (saved, current))
    moved = None not in (end, new_end) and end != new_end  # else a schedule key differs, or neither decays
    compared_apart = RESUMABLE_CHANGES + (SCHEDULE_LENGTH,)
    changed = sorted(
        (k for k in current if saved.get(k) != current[k] and not k.startswith(compared_apart)),
        key=lambda k: (k.count("."), k),  # top-level keys (pe, size, ...) first
    )
    if (changed or moved) and not step_folders(paths.checkpoints):
        # A start that failed before its first checkpoint left nothing to resume: the
        # corrected command is a new start, not another run.
        log(f"{paths.config} is from a start that saved no checkpoint; replacing it.")
        return
    if moved and not changed:
        raise ConfigError(
            f"{workdir} holds a run whose learning-rate schedule ends at step {end}, and this config's ends at "
            f"step {new_end} (optimizer.decay_steps, 0: num_steps): resuming would change the rate mid-run. To "
            f"train on at the schedule's final rate, keep its end: "
            f"--config.optimizer.decay_steps={end} --config.num_steps={config.num_steps}; for a new run with a new "
            f"schedule, start from its weights with --config.init_from={workdir} and a new --workdir."
        )
    if changed or moved:
        details = [f"{k}: {saved.get(k)!r} -> {current.get(k)!r}" for k in changed]
        details += [f"{SCHEDULE_END}: {end} -> {new_end}"] if moved else []
        raise ConfigError(
            f"{workdir} holds a run with a different config ({'; '.join(details[:6])}). "
            f"Use a new --workdir, or start from its weights with --config.init_from={workdir}."
        )


def _schedule_end(flat: dict) -> Optional[int]:
    """:func:`fire.training.optim.schedule_end` of a flattened config."""
    opt_cfg = SimpleNamespace(
        **{k.removeprefix("optimizer."): v for k, v in flat.items() if k.startswith("optimizer.")}
    )
    return optim.schedule_end(opt_cfg, flat["num_steps"])


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
