"""The training stream: packed windows of seq_len + 1 tokens, shuffled, batched, per process.

Every batch is a pure function of (seed, step): epoch e lays the documents out in a
seeded order, each followed by EOS, cuts that stream into windows of seq_len + 1
tokens (the last partial window is dropped) and visits the windows in a seeded order.
Global step s takes the next global_batch_size windows of that endless sequence (a
batch may straddle two epochs) and process p keeps its contiguous slice of rows. So
the iterator state is just the step, any process count reproduces the single-process
batches, and resuming yields exactly the batch that would have come next. grain runs
the batch function ahead of the trainer in threads (or worker processes).
"""

import json
import sys
import threading

import grain
import numpy as np
from absl import flags

from fire.data.errors import DataError

_PREFETCH_BATCHES = 8


class PackedWindows:
    """Windows of `window` tokens over epochs of the shuffled, EOS-joined documents."""

    def __init__(self, tokens: np.ndarray, offsets: np.ndarray, window: int, seed: int):
        """tokens [n]: doc_0 EOS doc_1 EOS ...; offsets [n_docs + 1]: segment starts."""
        self.tokens, self.offsets = tokens, np.asarray(offsets, np.int64)
        self.window, self.seed = int(window), int(seed)
        self.segment_lengths = np.diff(self.offsets)
        self.n_windows = int(self.offsets[-1]) // self.window  # per epoch
        if self.n_windows == 0:
            raise DataError(
                f"the training split has {int(self.offsets[-1])} tokens (EOS included), "
                f"fewer than one window of seq_len + 1 = {self.window}."
            )
        self._layouts, self._lock = {}, threading.Lock()

    def __reduce__(self):  # worker processes reopen a memory-mapped array, not a copy
        tokens = self.tokens
        if isinstance(tokens, np.memmap) and tokens.filename:
            tokens = _Reopen(tokens.filename)
        return (_rebuild, (tokens, self.offsets, self.window, self.seed))

    def layout(self, epoch: int):
        """(doc_order [n_docs], segment starts in the epoch's stream [n_docs + 1], window_order)."""
        with self._lock:
            if epoch not in self._layouts:
                rng = np.random.default_rng([self.seed, epoch])
                doc_order = rng.permutation(len(self.segment_lengths))
                starts = np.concatenate([[0], np.cumsum(self.segment_lengths[doc_order])])
                window_order = rng.permutation(self.n_windows)
                if len(self._layouts) >= 2:  # a batch rarely spans more than two epochs
                    self._layouts.pop(min(self._layouts))
                self._layouts[epoch] = (doc_order, starts, window_order)
            return self._layouts[epoch]

    def __getitem__(self, flat_ids) -> np.ndarray:
        """flat_ids [n] (window k of epoch e is e * n_windows + k) -> int32 [n, window]."""
        flat_ids = np.asarray(flat_ids, np.int64)
        out_NxW = np.empty((len(flat_ids), self.window), np.int32)
        epochs, ks = np.divmod(flat_ids, self.n_windows)
        for epoch in np.unique(epochs):
            rows = epochs == epoch
            doc_order, starts, window_order = self.layout(int(epoch))
            pos_NxW = window_order[ks[rows]][:, None] * self.window + np.arange(self.window)
            seg_NxW = np.searchsorted(starts, pos_NxW, side="right") - 1
            src_NxW = self.offsets[doc_order[seg_NxW]] + (pos_NxW - starts[seg_NxW])
            out_NxW[rows] = self.tokens[src_NxW]
        return out_NxW


class _Reopen(str):
    pass


def _rebuild(tokens, offsets, window, seed):
    if isinstance(tokens, _Reopen):
        tokens = np.load(str(tokens), mmap_mode="r")
    return PackedWindows(tokens, offsets, window, seed)


class LocalBatches:
    """step -> this process's rows of the global batch: {'inputs', 'targets'} int32 [B, L]."""

    def __init__(self, windows: PackedWindows, global_batch_size: int, process_index: int, process_count: int):
        if global_batch_size % process_count:
            raise DataError(f"global_batch_size {global_batch_size} does not divide by process_count {process_count}.")
        if not 0 <= process_index < process_count:
            raise DataError(f"process_index {process_index} is not in [0, {process_count}).")
        self.windows = windows
        self.global_batch_size = global_batch_size
        self.local_batch_size = global_batch_size // process_count
        self.row0 = process_index * self.local_batch_size

    def __call__(self, step: int) -> dict[str, np.ndarray]:
        first = step * self.global_batch_size + self.row0
        w_BxW = self.windows[np.arange(first, first + self.local_batch_size)]
        return {
            "inputs": np.ascontiguousarray(w_BxW[:, :-1]),
            "targets": np.ascontiguousarray(w_BxW[:, 1:]),
        }


class TrainIterator(grain.DatasetIterator):
    """Infinite iterator of local batches; get_state()/set_state() resume exactly.

    A grain DatasetIterator, so orbax can save it next to the model with
    `grain.checkpoint.CheckpointSave(it)` / `CheckpointRestore(it)`.
    """

    def __init__(self, batches: LocalBatches, num_workers: int, identity: dict):
        super().__init__()
        self._batches, self._num_workers = batches, num_workers
        self._identity = identity  # what a saved state must match to be resumed here
        self._next_step, self._inner = 0, None

    @property
    def step(self) -> int:
        """The step of the batch that comes next."""
        return self._next_step

    def start_prefetch(self) -> None:
        if self._inner is None:
            ds = grain.MapDataset.range(self._next_step, sys.maxsize).map(self._batches)
            options = grain.ReadOptions(num_threads=2, prefetch_buffer_size=_PREFETCH_BATCHES)
            ds = ds.to_iter_dataset(options)
            if self._num_workers:
                if not flags.FLAGS.is_parsed():  # grain's workers read absl flags (defaults do)
                    flags.FLAGS.mark_as_parsed()
                ds = ds.mp_prefetch(grain.MultiprocessingOptions(num_workers=self._num_workers))
            self._inner = iter(ds)
            self._inner.start_prefetch()

    def __next__(self) -> dict[str, np.ndarray]:
        self._assert_not_closed()
        self.start_prefetch()
        batch = next(self._inner)
        self._next_step += 1
        return batch

    def get_state(self) -> dict:
        """JSON-serialisable, and the same on every process."""
        return {"step": self._next_step, **self._identity}

    def set_state(self, state) -> None:
        """Accepts get_state()'s dict, or its JSON text."""
        if isinstance(state, (str, bytes)):
            state = json.loads(state)
        saved = {k: state.get(k) for k in self._identity}
        if saved != self._identity:
            raise DataError(
                f"iterator state {saved} was saved for another data setup than this one "
                f"({self._identity}); exact resume is impossible."
            )
        self._stop()
        self._next_step = int(state["step"])

    def close(self) -> None:
        self._stop()
        super().close()

    def _stop(self):
        if self._inner is not None:
            self._inner.close()
            self._inner = None


def make_train_iterator(
    split_tokens,
    seq_len: int,
    global_batch_size: int,
    seed: int,
    process_index: int,
    process_count: int,
    num_workers: int,
) -> TrainIterator:
    windows = PackedWindows(split_tokens.tokens, split_tokens.offsets, seq_len + 1, seed)
    batches = LocalBatches(windows, global_batch_size, process_index, process_count)
    identity = dict(
        seed=int(seed),
        seq_len=int(seq_len),
        global_batch_size=int(global_batch_size),
        tokenizer=split_tokens.meta["tokenizer"],
        train_tokens=int(split_tokens.meta["tokens"]),
    )
    return TrainIterator(batches, num_workers, identity)
