"""Orbax checkpoints: parameters, optimizer state with the step, and the data iterator's
position, saved together (asynchronously) so a resumed run continues exactly.

Items per step: ``params`` (loadable alone: ``init_from`` takes weights only),
``opt`` (``{'step', 'opt_state'}``) and ``data`` (the iterator's JSON state, which is the
same on every process: a position in the global stream).
"""

import contextlib
import os

import jax
import orbax.checkpoint as ocp
from absl import logging

from fire.workdir import Workdir

ITEMS = ("params", "opt", "data")


class Checkpointer:
    def __init__(self, workdir: str, keep: int, asynchronous: bool = True):
        self.directory = Workdir(workdir).checkpoints
        self.manager = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(
                max_to_keep=keep, create=True, enable_async_checkpointing=asynchronous
            ),
            item_names=ITEMS,
        )

    def latest_step(self):
        return self.manager.latest_step()

    def save(self, step: int, state: dict, data_state: dict):
        """Starts an asynchronous save; device arrays are copied before this returns, so the
        state may be donated to the next step right away."""
        self.manager.save(
            step,
            args=ocp.args.Composite(
                params=ocp.args.StandardSave(state["params"]),
                opt=ocp.args.StandardSave({"step": state["step"], "opt_state": state["opt_state"]}),
                data=ocp.args.JsonSave(data_state),
            ),
            force=True,
        )

    def restore(self, step: int, abstract_state: dict):
        """``(state, data_state)`` at ``step``, placed with the shardings of ``abstract_state``."""
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
        state = {"params": restored.params, **restored.opt}
        return state, restored.data

    def wait(self):
        self.manager.wait_until_finished()

    def close(self):
        self.manager.wait_until_finished()
        self.manager.close()


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


def restore_params(workdir: str, abstract_params, step=None):
    """Weights only, from another run's latest (or given) checkpoint."""
    directory = Workdir(workdir).checkpoints
    manager = _read_only(directory)
    try:
        step = manager.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"No checkpoint in {directory}: nothing to load weights from.")
        restored = manager.restore(step, args=ocp.args.Composite(params=ocp.args.StandardRestore(abstract_params)))
    finally:
        manager.close()
    return restored.params, step


def abstract_like(tree, shardings):
    """ShapeDtypeStructs carrying the target shardings, for restoring in place."""
    return jax.tree_util.tree_map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), tree, shardings)
