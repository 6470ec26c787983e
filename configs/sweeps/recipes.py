"""Training recipes shared by sweeps (not a sweep itself), and the CPU task table's sweeps.

Sweeps that use the same recipe and ``runs_dir`` share runs: the FIRE runs of the main
table are the ``fire`` rows of the ablations.
"""

# CPU scale: the tiny model widened to 4 layers (so NoPE, which needs depth to infer
# positions, gets a fair chance), 1000 steps of 2048 tokens (2.0M tokens seen) at every
# training length, on the embedded Shakespeare corpus with the byte tokenizer.
CPU_RUNS_DIR = "runs/cpu"
CPU_TOKENS_PER_STEP = 2048
CPU_OVERRIDES = dict(model=dict(num_layers=4), num_steps=1000, log_every=100, eval_every=0, checkpoint_every=250)
CPU_AXES = dict(size=["tiny"], data=["shakespeare"])
CPU_EVAL = dict(factors=[1, 2, 4, 8, 16], protocol="stream", eval_tokens=65536, stride=0)


def cpu_grid(train_len: int, seeds) -> dict:
    """A grid at one training length: the batch keeps 2048 tokens per step."""
    return dict(train_len=[train_len], seed=list(seeds), batch_size=[CPU_TOKENS_PER_STEP // train_len])


# CPU task table (configs/sweeps/cpu_tasks_*.py): the tiny model widened to 4 layers, batches of
# 16 examples, the task's own curriculum; every run checkpoints at each validation.
CPU_TASKS_RUNS_DIR = "runs/cpu_tasks"
CPU_TASK_OVERRIDES = dict(model=dict(num_layers=4), log_every=250, eval_every=1000, checkpoint_every=1000)
CPU_TASK_SEEDS = [0, 1, 2]


def cpu_task_rows() -> list:
    """The table's trained rows: the encodings, then FIRE's ablations that bear on
    extrapolation (its interpolation off, its normaliser capped at the training length, randomized
    training positions)."""
    fire = lambda **encoding: dict(pe="fire", encoding=encoding)
    rows = [(pe, dict(pe=pe)) for pe in ("nope", "rope", "alibi", "kerple_log", "t5", "fire", "fire_s")]
    return rows + [
        ("fire_no_interpolation", fire(interpolate=False)),
        ("fire_cap_trained", fire(normalizer_cap="train_len")),
        ("fire_randomized_positions", dict(pe="fire", train_positions=dict(randomize=True))),
    ]


# The randomized-positions row scored as Ruoss et al. do, at randomized ids too.
CPU_TASK_EVAL_VARIANTS = [("randomized_eval", dict(rows=["fire_randomized_positions"], positions="randomized"))]


def cpu_task_sweep(task: str, lengths: list, **overrides):
    """The CPU task table's sweep of ``task``: every row of :func:`cpu_task_rows` with
    ``CPU_TASK_SEEDS``, ``CPU_TASK_OVERRIDES`` updated by ``overrides``, tested at ``lengths``
    (the task's unit; ranges START:STOP[:STEP]) on 500 examples each; results in
    ``reproduction/cpu_tasks/TASK``."""
    import ml_collections

    c = ml_collections.ConfigDict()
    c.name = f"cpu_tasks_{task}"
    c.config = "configs/lm.py"
    c.axes = dict(size=["tiny"], task=[task], seed=CPU_TASK_SEEDS)
    c.variants = cpu_task_rows()
    c.eval_variants = CPU_TASK_EVAL_VARIANTS
    c.overrides = {**CPU_TASK_OVERRIDES, **overrides}
    c.eval = dict(lengths=list(lengths), n_examples=500)
    c.runs_dir = CPU_TASKS_RUNS_DIR
    c.output_dir = f"reproduction/cpu_tasks/{task}"
    return c
