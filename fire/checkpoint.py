"""Orbax checkpoints: parameters, optimizer state with the step, and the data iterator's
position, saved together (asynchronously) so a resumed run continues exactly.

Items per step: ``params`` (loadable alone: ``init_from`` and the length sweep take weights
only), ``opt`` (``{'step', 'opt_state'}``), ``data`` (the iterator's JSON state, which is the
same on every process: a position in the global stream) and ``meta`` (the step and a
fingerprint of ``params`` and ``opt``: whether they are finite and a checksum of their bits).

What is kept is usable: the trainer saves only finite states (:func:`fingerprints`), never
keeps fewer than one checkpoint, and a reader that meets a step it cannot use (a file
truncated, deleted or garbled, a data position that disagrees with the step, non-finite
values) says which and why and falls back to the newest step it can use. The trainer moves
such a step aside to ``damaged_checkpoints/`` (never deletes it); readers only skip it.
"""

import contextlib
import errno
import gc
import os
import sys
import time
from typing import Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from absl import logging

from fire.errors import ConfigError, UserError
from fire.workdir import Workdir

ITEMS = ("params", "opt", "data", "meta")
_GOLDEN = np.uint32(2654435761)  # odd: multiplying by it is a bijection on uint32
# Errors of the filesystem worth naming as such: a full disk, a read-only folder, ...
_OS_ERRORS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EIO, errno.EFBIG)


class CheckpointError(UserError, RuntimeError):
    """Checkpoints that cannot be written or read: the message names the folder, the step,
    the reason, and what to do."""


class _Unusable(Exception):
    """A step that was read but cannot be resumed from (the message says why)."""


# ---------------------------------------------------------------- fingerprints


def _words(x) -> jax.Array:
    """An array's bits as uint32 words (one per element of 1, 2 or 4 bytes)."""
    if x.dtype == jnp.bool_:
        return x.astype(jnp.uint32)
    unsigned = {1: jnp.uint8, 2: jnp.uint16, 4: jnp.uint32, 8: jnp.uint32}[jnp.dtype(x.dtype).itemsize]
    return jax.lax.bitcast_convert_type(x, unsigned).astype(jnp.uint32)


def _fingerprint(tree) -> dict:
    """``{'finite': bool, 'checksum': uint32}``: every floating value finite, and a checksum
    of every bit weighted by its position (any change of one value changes it; a sum mod 2^32,
    so the same for any sharding or reduction order)."""
    leaves = jax.tree_util.tree_leaves(tree)
    finite = jnp.array(True)
    checksum = jnp.zeros((), jnp.uint32)
    for i, x in enumerate(leaves):
        if jnp.issubdtype(x.dtype, jnp.inexact):
            finite = finite & jnp.isfinite(x).all()
        words = _words(x).reshape(-1)
        weights = jax.lax.iota(jnp.uint32, words.size) * _GOLDEN + np.uint32(1)
        checksum = checksum + jnp.sum(words * weights, dtype=jnp.uint32) * np.uint32(2 * i + 1)
    return {"finite": finite, "checksum": checksum}


_fingerprints = jax.jit(lambda items: {name: _fingerprint(tree) for name, tree in items.items()})


def fingerprints(state: dict) -> dict:
    """``{'params': {'finite', 'checksum'}, 'opt': {...}}`` of a training state (python values),
    as stored in a checkpoint's ``meta`` and checked when it is read."""
    items = {"params": state["params"], "opt": {"step": state["step"], "opt_state": state["opt_state"]}}
    return _to_python(_fingerprints(items))


def _to_python(report) -> dict:
    return {k: {"finite": bool(v["finite"]), "checksum": int(v["checksum"])} for k, v in jax.device_get(report).items()}


def _check(name: str, tree, saved: Optional[dict]) -> None:
    """Raises _Unusable if ``tree`` (item ``name`` as read) is not finite or differs from the
    fingerprint saved with it (``saved``: the ``meta`` item, None for checkpoints without)."""
    got = _to_python(_fingerprints({name: tree}))[name]
    if not got["finite"]:
        raise _Unusable(f"its {name} hold NaN or Inf")
    want = (saved or {}).get("fingerprints", {}).get(name)
    if want is not None and want["checksum"] != got["checksum"]:
        raise _Unusable(f"its {name} differ from what was saved (checksum {got['checksum']} != {want['checksum']})")


# ---------------------------------------------------------------- reasons


@contextlib.contextmanager
def _reading():
    """While reading a step that may be damaged: orbax's concurrent reads of the other arrays
    end as 'Exception ignored in <coroutine>' tracebacks once one read fails. The failure is
    reported once, by the caller; the echoes are dropped."""
    previous = sys.unraisablehook
    sys.unraisablehook = lambda unraisable: None
    try:
        yield
    finally:
        gc.collect()  # finalise the failed read's coroutines under this hook
        sys.unraisablehook = previous


def reason(e: BaseException) -> str:
    """One short line for a storage library's exception: a filesystem error by name (``No space
    left on device``), else the innermost message without TensorStore's spec dump."""
    chain = []
    while e is not None and e not in chain:
        chain.append(e)
        e = e.__cause__ or e.__context__
    text = " ".join(str(x) for x in chain)
    for code in _OS_ERRORS:
        if any(isinstance(x, OSError) and x.errno == code for x in chain) or os.strerror(code) in text:
            return os.strerror(code)
    inner = chain[-1]
    message = (str(inner).strip().strip("'\"") or type(inner).__name__).splitlines()[0]
    for junk in (" [tensorstore_spec", " [source locations", ". See full TensorStore details"):
        message = message.split(junk)[0]
    if isinstance(inner, _Unusable):
        return message
    message = message if len(message) <= 240 else message[:240] + "..."
    return f"{type(inner).__name__}: {message}"


# ---------------------------------------------------------------- the trainer's checkpoints


class Checkpointer:
    """A run's checkpoints, written asynchronously; the newest ``keep`` that are good are kept.

    A checkpoint is good once its save has completed and the steps after it ran with a finite
    loss and gradient (the trainer stops otherwise, and moves it aside if the very next step
    diverged: :meth:`set_aside`). So older ones are deleted only when the next save starts
    (every step since has run finite) and when a run finishes (:meth:`finish`): while a run
    trains, ``keep + 1`` checkpoints exist, and the newest good one is never deleted.

    Raises:
      ConfigError: ``keep`` below 1.
      CheckpointError: the folder cannot be created.
    """

    def __init__(self, workdir: str, keep: int, asynchronous: bool = True):
        if isinstance(keep, bool) or not isinstance(keep, int) or keep < 1:
            raise ConfigError(f"keep_checkpoints must be an integer >= 1 (the newest is always kept), got {keep!r}.")
        self.keep = keep
        self.workdir = Workdir(workdir)
        self.directory = self.workdir.checkpoints
        try:
            self.manager = ocp.CheckpointManager(
                self.directory,
                # Deletion is ours (_prune): orbax would delete older steps as soon as a new one
                # is written, before anyone knows whether the new one is good.
                options=ocp.CheckpointManagerOptions(create=True, enable_async_checkpointing=asynchronous),
                item_names=ITEMS,
            )
        except OSError as e:
            raise CheckpointError(f"Cannot create the checkpoint folder {self.directory}: {reason(e)}.") from None

    def latest_step(self):
        return self.manager.latest_step()

    def save(self, step: int, state: dict, data_state: dict, meta: dict):
        """Starts an asynchronous save; device arrays are copied before this returns, so the
        state may be donated to the next step right away. ``meta``: ``{'fingerprints': ...}``.

        Raises:
          CheckpointError: this save, or the one before it still in flight, failed (a full
            disk, a folder made read-only, ...).
        """
        try:
            self.manager.wait_until_finished()  # the previous save is complete (or this raises)
            self._prune()  # every step since the previous save ran finite: it is good
            self.manager.save(
                step,
                args=ocp.args.Composite(
                    params=ocp.args.StandardSave(state["params"]),
                    opt=ocp.args.StandardSave({"step": state["step"], "opt_state": state["opt_state"]}),
                    data=ocp.args.JsonSave(data_state),
                    meta=ocp.args.JsonSave({"step": step, **meta}),
                ),
                force=True,
            )
        except Exception as e:
            raise self._save_error(e) from None

    def _prune(self) -> None:
        """Deletes all but the newest ``keep`` checkpoints."""
        for step in sorted(self.manager.all_steps())[: -self.keep]:
            self.manager.delete(step)

    def finish(self) -> None:
        """At the end of a run: waits for the last save, then keeps the newest ``keep``.

        Raises:
          CheckpointError: the last save failed.
        """
        self.wait()
        try:
            self._prune()
        except Exception as e:
            raise self._save_error(e) from None

    def set_aside(self, step: int) -> str:
        """Moves ``step`` (once its save is complete) to ``damaged_checkpoints/``: it is not
        good (the step after it diverged). Returns where it went."""
        self.wait()
        moved = self._move_aside(step)
        self.manager.reload()
        return moved

    def _save_error(self, e: BaseException) -> CheckpointError:
        steps = step_folders(self.directory)
        then = f"resume from step {steps[-1]}, the newest complete checkpoint" if steps else "start again"
        return CheckpointError(
            f"Saving a checkpoint to {self.directory} failed: {reason(e)}. Fix the cause (free space, "
            f"permissions) and re-run the same command to {then}."
        )

    def restore(self, step: int, abstract_state: dict) -> tuple:
        """``(state, data_state)`` at ``step``, placed with the shardings of ``abstract_state``.

        Raises:
          CheckpointError: the step cannot be read or used (the reason named).
        """
        try:
            with _reading():
                return self._restore(step, abstract_state)
        except Exception as e:
            raise CheckpointError(f"Checkpoint step {step} in {self.directory} cannot be used: {reason(e)}.") from None

    def restore_latest(self, abstract_state: dict, log: Callable[[str], None] = print) -> Optional[tuple]:
        """``(state, data_state, step)`` from the newest step that can be used, placed with the
        shardings of ``abstract_state``; None if there is no checkpoint. A newer step that
        cannot be used (unreadable, inconsistent, non-finite) is moved to
        ``damaged_checkpoints/`` with a message saying why.

        Raises:
          CheckpointError: no step can be used (each one's reason named); nothing is moved.
        """
        steps = sorted(self.manager.all_steps(), reverse=True)
        if not steps:
            return None
        skipped = []
        for step in steps:
            try:
                with _reading():
                    state, data_state = self._restore(step, abstract_state)
            except Exception as e:  # whatever the storage library raises for a damaged step
                skipped.append((step, reason(e)))
                continue
            if skipped:
                _sync("fire_checkpoint_fallback")  # every process has read before any moves
                for bad, why in skipped:
                    moved = self._move_aside(bad)
                    log(
                        f"Checkpoint step {bad} in {self.directory} cannot be used ({why}); moved it to {moved}. "
                        f"Resuming from step {step}."
                    )
                self.manager.reload()
            return state, data_state, step
        raise CheckpointError(
            f"No checkpoint in {self.directory} can be used: "
            + "; ".join(f"step {s}: {why}" for s, why in skipped)
            + ". Restore the folder from a copy, or move it away to start afresh."
        )

    def _restore(self, step: int, abstract_state: dict) -> tuple:
        restored = self.manager.restore(
            step,
            args=ocp.args.Composite(
                params=ocp.args.StandardRestore(abstract_state["params"]),
                opt=ocp.args.StandardRestore(
                    {"step": abstract_state["step"], "opt_state": abstract_state["opt_state"]}
                ),
                data=ocp.args.JsonRestore(),
            ),
        )
        meta = _read_meta(self.manager, step)
        if int(restored.opt["step"]) != step:
            raise _Unusable(f"its optimizer state is at step {int(restored.opt['step'])}, not {step}")
        data_step = (restored.data or {}).get("step")
        if data_step != step:
            raise _Unusable(f"its data position is step {data_step}, not {step}: its batches would be the wrong ones")
        _check("params", restored.params, meta)
        _check("opt", restored.opt, meta)
        return {"params": restored.params, **restored.opt}, restored.data

    def _move_aside(self, step: int) -> str:
        """Moves a step's folder into ``damaged_checkpoints/`` (process 0); returns where."""
        target = os.path.join(self.workdir.damaged, str(step))
        if jax.process_index() == 0:
            os.makedirs(self.workdir.damaged, exist_ok=True)
            if os.path.exists(target):
                target += f".{time.strftime('%Y%m%d-%H%M%S')}"
            os.rename(os.path.join(self.directory, str(step)), target)
        _sync("fire_checkpoint_moved")
        return target

    def wait(self):
        """Waits for the save in flight. Raises CheckpointError if it failed."""
        try:
            self.manager.wait_until_finished()
        except Exception as e:
            raise self._save_error(e) from None

    def close(self):
        """Waits for the save in flight and releases the manager. Raises CheckpointError if
        the save failed."""
        try:
            self.manager.wait_until_finished()
        except Exception as e:
            with contextlib.suppress(Exception):
                self.manager.close()
            raise self._save_error(e) from None
        self.manager.close()


def _sync(name: str) -> None:
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


def step_folders(directory: str) -> list:
    """The finished steps in a checkpoint folder (orbax renames a step's folder to its number
    once complete), ascending."""
    try:
        return sorted(int(name) for name in os.listdir(directory) if name.isdigit())
    except OSError:
        return []


def _read_meta(manager, step: int) -> Optional[dict]:
    """The ``meta`` item of a step, or None for checkpoints saved before it existed."""
    if not os.path.isdir(os.path.join(str(manager.directory), str(step), "meta")):
        return None
    return manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore())).meta


# ---------------------------------------------------------------- readers (weights only)


@contextlib.contextmanager
def _quiet_absl():
    """orbax warns at every read-only open that it will not write: not news to a reader."""
    level = logging.get_verbosity()
    logging.set_verbosity(logging.ERROR)
    try:
        yield
    finally:
        logging.set_verbosity(level)


def _read_only(directory: str) -> ocp.CheckpointManager:
    with _quiet_absl():
        return ocp.CheckpointManager(directory, options=ocp.CheckpointManagerOptions(read_only=True), item_names=ITEMS)


def latest_step(workdir: str):
    """The newest checkpointed step of a run, or None if it has none."""
    directory = Workdir(workdir).checkpoints
    if not os.path.isdir(directory):
        return None
    manager = _read_only(directory)
    try:
        return manager.latest_step()
    finally:
        manager.close()


def restore_params(workdir: str, abstract_params, step=None, log: Callable[[str], None] = print):
    """Weights only, from a run's newest usable checkpoint at or before ``step`` (default: its
    latest): ``(params, step)``. A step that cannot be used (unreadable, non-finite, not what
    was saved) is skipped with a message saying why; nothing is moved.

    Raises:
      CheckpointError: the run has no checkpoint, or none that can be used.
    """
    directory = Workdir(workdir).checkpoints
    if not os.path.isdir(directory):
        raise CheckpointError(f"No checkpoint in {directory}: nothing to load weights from.")
    manager = _read_only(directory)
    try:
        steps = sorted((s for s in manager.all_steps() if step is None or s <= step), reverse=True)
        if not steps:
            raise CheckpointError(f"No checkpoint in {directory}: nothing to load weights from.")
        skipped = []
        for s in steps:
            try:
                with _reading():
                    args = ocp.args.Composite(params=ocp.args.StandardRestore(abstract_params))
                    restored = manager.restore(s, args=args)
                    _check("params", restored.params, _read_meta(manager, s))
            except Exception as e:
                skipped.append((s, reason(e)))
                continue
            for bad, why in skipped:
                log(f"Checkpoint step {bad} of {workdir} cannot be used ({why}); using step {s}.")
            return restored.params, s
    finally:
        manager.close()
    raise CheckpointError(
        f"No checkpoint in {directory} can be used: " + "; ".join(f"step {s}: {why}" for s, why in skipped) + "."
    )


def abstract_like(tree, shardings):
    """ShapeDtypeStructs carrying the target shardings, for restoring in place."""
    return jax.tree_util.tree_map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), tree, shardings)
