"""The CPU task table, addition: reversed decimal addition with index hints (Zhou et al. 2024),
trained on 1-10 digits, tested to 30, 500 examples per length, for the encodings and FIRE's
ablations of configs/sweeps/recipes.py (cpu_task_rows), three seeds.

    python sweep.py --sweep=configs/sweeps/cpu_tasks_addition.py --dry_run

Recipe: the tiny model (2 layers, d_model 128), 8000 steps of 16 examples (128,000 examples
seen), lr 1e-3. Measured with FIRE, seed 0, on 2 cores: the validation's exact match stays
below 1% to step 4000, then jumps (67% at 6000, 92% at 8000 and 10000); at lr 2e-3 (2 or 4
layers) it stayed below 4% through 3000 steps. Results in reproduction/cpu_tasks/addition.
"""

from configs.sweeps import recipes


def get_config():
    return recipes.cpu_task_sweep(
        "addition", ["5:30:5"], model=dict(num_layers=2), num_steps=8000, optimizer=dict(lr=1e-3)
    )
