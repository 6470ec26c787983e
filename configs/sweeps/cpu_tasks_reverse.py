"""The CPU task table, reverse: strings of 1-20 items from a 10-letter alphabet reversed
(Kazemnejad et al. 2023's causal task), tested to 60 items, 500 examples per length, for the
encodings and FIRE's ablations of configs/sweeps/recipes.py (cpu_task_rows), three seeds.

    python sweep.py --sweep=configs/sweeps/cpu_tasks_reverse.py --dry_run
    python sweep.py --sweep=configs/sweeps/cpu_tasks_reverse.py --only=fire:0   # one row's seed

Recipe: 4 layers, d_model 128, 3000 steps of 16 examples (48,000 examples seen), lr 2e-3.
Results in reproduction/cpu_tasks/reverse.
"""

from configs.sweeps import recipes


def get_config():
    return recipes.cpu_task_sweep("reverse", ["10:60:10"], num_steps=3000)
