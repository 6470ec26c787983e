"""The main table at CPU scale: every encoding of the paper's comparison, trained at 128 with
three seeds and at 512 with one, evaluated at 1x ... 16x the training length (RoPE-PI and YaRN
on RoPE's runs: 32 runs, 10 rows).

    python sweep.py --sweep=configs/sweeps/cpu_main.py --dry_run
    python sweep.py --sweep=configs/sweeps/cpu_main.py

Recipe (configs/sweeps/recipes.py): tiny model with 4 layers (d_model 128, 4 heads), 1000
steps of 2048 tokens (2.0M tokens seen), Shakespeare, bytes; log-perplexity on 65,536
validation tokens per length, protocol stream. Runs in runs/cpu, results in reproduction/cpu_main.
"""

import ml_collections

from configs.sweeps import recipes


def get_config():
    c = ml_collections.ConfigDict()
    c.name = "cpu_main"
    c.config = "configs/lm.py"
    c.axes = dict(pe=["nope", "rope", "t5", "alibi", "kerple_log", "sandwich", "fire", "fire_s"], **recipes.CPU_AXES)
    # RoPE-PI and YaRN take their scale from the evaluation length, so at the training length
    # they are RoPE and their runs would train bit-identically to RoPE's: they are RoPE's runs
    # evaluated with the interpolations, rows of their own.
    c.eval_variants = [("rope_pi", dict(rows=["rope"], pe="rope_pi")), ("yarn", dict(rows=["rope"], pe="yarn"))]
    c.grids = [recipes.cpu_grid(128, seeds=(0, 1, 2)), recipes.cpu_grid(512, seeds=(0,))]
    c.overrides = recipes.CPU_OVERRIDES
    c.eval = recipes.CPU_EVAL
    c.runs_dir = recipes.CPU_RUNS_DIR
    c.output_dir = "reproduction/cpu_main"
    return c
