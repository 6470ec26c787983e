"""The CPU task table, addition: reversed decimal addition with index hints (Zhou et al. 2024),
trained on 1-10 digits, tested to 30, 500 examples per length, for the encodings and FIRE's
ablations of configs/sweeps/recipes.py (cpu_task_rows), three seeds.

    python sweep.py --sweep=configs/sweeps/cpu_tasks_addition.py --dry_run

Recipe: the tiny model (2 layers, d_model 128), 8000 steps of 16 examples (128,000 examples
seen), lr 1e-3. Measured with FIRE, seed 0, on 2 cores: the validation's exact match stays
below 1% to step 4000, then jumps (67% at 6000, 92% at 8000 and 10000); at lr 2e-3 (2 or 4
layers) it stayed below 4% through 3000 steps. Results in reproduction/cpu_tasks/addition.
"""

import ml_collections

from configs.sweeps import recipes


def get_config():
    c = ml_collections.ConfigDict()
    c.name = "cpu_tasks_addition"
    c.config = "configs/lm.py"
    c.axes = dict(size=["tiny"], task=["addition"], seed=recipes.CPU_TASK_SEEDS)
    c.variants = recipes.cpu_task_rows()
    c.eval_variants = recipes.CPU_TASK_EVAL_VARIANTS
    c.overrides = dict(recipes.CPU_TASK_OVERRIDES, model=dict(num_layers=2), num_steps=8000, optimizer=dict(lr=1e-3))
    c.eval = dict(lengths=["5:30:5"], n_examples=500)
    c.runs_dir = recipes.CPU_TASKS_RUNS_DIR
    c.output_dir = "reproduction/cpu_tasks/addition"
    return c
