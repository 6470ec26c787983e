"""FIRE's ablations at CPU scale: the paper's axes (log transform, threshold, interpolation,
MLP depth, learned threshold, L0 = 512 as in the paper's listing, layer sharing) and ours
(a normaliser capped at the training length, at evaluation only and in training; randomized
positions, evaluated at ordinary and at randomized ids), trained at 128 with three seeds,
evaluated at 1x ... 16x.

    python sweep.py --sweep=configs/sweeps/cpu_ablations.py --dry_run
    python sweep.py --sweep=configs/sweeps/cpu_ablations.py

Same recipe and runs folder as configs/sweeps/cpu_main.py (configs/sweeps/recipes.py), so the
`fire` and `fire_s` rows reuse the main table's runs. Results in reproduction/cpu_ablations.
"""

import ml_collections

from configs.sweeps import recipes


def get_config():
    c = ml_collections.ConfigDict()
    c.name = "cpu_ablations"
    c.config = "configs/lm.py"
    c.axes = dict(**recipes.CPU_AXES)
    c.grids = [recipes.cpu_grid(128, seeds=(0, 1, 2))]
    fire = lambda **encoding: dict(pe="fire", encoding=encoding)
    c.variants = [
        ("fire", dict(pe="fire")),
        ("fire_no_log", fire(log_transform=False)),
        ("fire_no_threshold", fire(threshold=False)),
        ("fire_no_interpolation", fire(interpolate=False)),
        ("fire_mlp_depth_2", fire(mlp_depth=2)),
        ("fire_fixed_L", fire(learn_L=False)),
        ("fire_L0_512", fire(L0=512.0)),
        ("fire_s", dict(pe="fire_s")),
        ("fire_cap_trained", fire(normalizer_cap="train_len")),
        ("fire_randomized_positions", dict(pe="fire", train_positions=dict(randomize=True))),
    ]
    # The same trained FIRE weights, scored with the normaliser capped at the training length.
    # The randomized-positions runs scored at randomized ids too, as Ruoss et al. evaluate.
    c.eval_variants = [
        ("cap_at_eval", dict(rows=["fire"], encoding=dict(normalizer_cap="train_len"))),
        ("randomized_eval", dict(rows=["fire_randomized_positions"], positions="randomized")),
    ]
    c.overrides = recipes.CPU_OVERRIDES
    c.eval = recipes.CPU_EVAL
    c.runs_dir = recipes.CPU_RUNS_DIR
    c.output_dir = "reproduction/cpu_ablations"
    return c
