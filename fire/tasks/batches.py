"""Training batches of task examples: one example per row, right-padded, the loss on the answer.

Row ``r`` of the global batch at step ``s`` holds one example of a length drawn uniformly from
``[min_len, max_len]`` (the length curriculum), generated from the seed sequence
``(seed, s, r)`` (``fire.tasks.base.training_rng``): every batch is a pure function of the
step, so the iterator state is the step alone, any process count reproduces the
single-process batches, and a resumed run gets exactly the batch that would have come next
(as the language-modelling stream, ``fire.data.pipeline``).

A row is ``prompt answer EOS`` then PAD up to ``seq_len + 1`` tokens; ``inputs`` and
``targets`` are that row shifted by one, and ``weights`` is 1 where the target is an answer
token or the EOS, 0 elsewhere (prompt and padding). Each example starts its row at position 0,
so FIRE's normaliser ``psi(max(L, i))`` and every position encoding see the example's own
positions; padding comes after the example, so causal attention never lets a real token see
it and no attention mask is needed.
"""

import numpy as np

from fire.tasks.base import Task, TaskError, training_rng


def example_tokens(vocab, example) -> np.ndarray:
    """An example's token row, ``prompt answer EOS`` (int32), without padding."""
    prompt, answer = vocab.encode_symbols(example.prompt), vocab.encode_symbols(example.answer)
    return np.concatenate([prompt, answer, [vocab.eos_id]]).astype(np.int32)


def example_row(task: Task, rng: np.random.Generator, length: int, seq_len: int) -> tuple:
    """One example as ``(tokens [seq_len + 1], weights [seq_len])``: the row and the loss
    weights of its targets."""
    vocab = task.vocabulary
    example = task.example(rng, length)
    row = example_tokens(vocab, example)
    n = len(row)
    if n > seq_len + 1:
        raise TaskError(
            f"an example of task={task.name} at length {length} has {n} tokens, more than a row of seq_len + 1 = "
            f"{seq_len + 1}: set --config.train_len={task.max_tokens(length) - 1} or more."
        )
    tokens = np.full(seq_len + 1, vocab.pad_id, np.int32)
    tokens[:n] = row
    weights = np.zeros(seq_len, np.float32)
    weights[len(example.prompt) - 1 : n - 1] = 1.0  # targets answer[0] .. EOS
    return tokens, weights


def check_curriculum(task: Task, min_len: int, max_len: int, seq_len: int) -> None:
    """Raises TaskError for training lengths out of order, lengths the task cannot make, or
    rows of ``seq_len + 1`` tokens too short for the longest example (naming the
    ``train_len`` that fits)."""
    if min_len > max_len:
        raise TaskError(f"task.min_len {min_len} is above task.max_len {max_len}: give min_len <= max_len.")
    task.check_length(min_len)
    task.check_length(max_len)
    longest = task.max_tokens(max_len)  # every task's grows with the length
    if longest > seq_len + 1:
        raise TaskError(
            f"task={task.name} at task.max_len {max_len} makes examples of up to {longest} tokens, more than a "
            f"training row of train_len + 1 = {seq_len + 1}: set --config.train_len={longest - 1} or more."
        )


class TaskBatches:
    """step -> this process's rows of the global batch: ``{'inputs', 'targets'}`` int32 and
    ``'weights'`` float32, each ``[global_batch_size // process_count, seq_len]``.

    Raises:
      TaskError: a length range the task cannot make, out of order, or a row too short for
        its longest example (with the ``train_len`` that fits).
    """

    def __init__(self, task: Task, min_len: int, max_len: int, seq_len: int, global_batch_size: int, seed: int,
                 process_index: int = 0, process_count: int = 1):  # fmt: skip
        check_curriculum(task, min_len, max_len, seq_len)
        if global_batch_size % process_count:
            raise TaskError(f"global_batch_size {global_batch_size} does not divide by process_count {process_count}.")
        self.task, self.min_len, self.max_len, self.seq_len, self.seed = task, min_len, max_len, seq_len, seed
        self.local_batch_size = global_batch_size // process_count
        self.global_batch_size = global_batch_size
        self.row0 = process_index * self.local_batch_size

    def row(self, step: int, global_row: int) -> tuple:
        rng = training_rng(self.seed, step, global_row)
        length = int(rng.integers(self.min_len, self.max_len + 1))
        return example_row(self.task, rng, length, self.seq_len)

    def __call__(self, step: int) -> dict:
        rows = [self.row(step, self.row0 + i) for i in range(self.local_batch_size)]
        tokens_BxW = np.stack([t for t, _ in rows])
        return {
            "inputs": np.ascontiguousarray(tokens_BxW[:, :-1]),
            "targets": np.ascontiguousarray(tokens_BxW[:, 1:]),
            "weights": np.stack([w for _, w in rows]),
        }
