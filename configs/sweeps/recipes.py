"""Training recipes shared by sweeps (not a sweep itself).

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
