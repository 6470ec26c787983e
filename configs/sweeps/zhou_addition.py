"""Zhou et al. 2024 (arXiv 2402.09371) at their scale, for accelerators: reversed addition
with index hints, trained on 1-40 digits, tested to 100, five seeds, for the encodings they
compare (FIRE shared across layers with one 32-unit hidden layer, as theirs; KERPLE-log,
RoPE, NoPE), each with and without randomized positions.

    python sweep.py --sweep=configs/sweeps/zhou_addition.py --dry_run --device_memory=h100-80gb

Their recipe where the paper states it (TASKS_SPEC.md): AdamW lr 3e-4, weight decay 0.1,
500 warm-up steps, cosine to 0.1x; 1000 test examples per length, greedy decoding, exact
match. Assumed where it does not: the shape of their 25M model (8 layers, d_model 512,
8 heads, d_ff 2048 here: 25M parameters), the batch (256 examples) and the steps (50,000);
the randomized positions' range (0: 16 x the training row, 1,952 ids for the 121-token row of
40 digits). Results in reproduction/zhou_addition once run.
"""

import ml_collections


def get_config():
    c = ml_collections.ConfigDict()
    c.name = "zhou_addition"
    c.config = "configs/lm.py"
    c.axes = dict(size=["base"], task=["addition"], seed=[0, 1, 2, 3, 4])
    randomized = dict(train_positions=dict(randomize=True))
    c.variants = [
        ("fire_s", dict(pe="fire_s")),
        ("fire_s_randomized", dict(pe="fire_s", **randomized)),
        ("kerple_log", dict(pe="kerple_log")),
        ("kerple_log_randomized", dict(pe="kerple_log", **randomized)),
        ("rope", dict(pe="rope")),
        ("nope", dict(pe="nope")),
    ]
    c.overrides = dict(
        model=dict(num_layers=8, d_model=512, num_heads=8, d_ff=2048),
        task=dict(min_len=1, max_len=40, reversed=True, index_hints=True),
        batch_size=256,
        num_steps=50_000,
        optimizer=dict(lr=3e-4, weight_decay=0.1, warmup_steps=500, schedule="cosine", min_lr_ratio=0.1),
        log_every=100,
        eval_every=2500,
        checkpoint_every=2500,
    )
    c.eval = dict(lengths=["10:100:10"], n_examples=1000, eval_seed=0)
    c.runs_dir = "runs/zhou_addition"
    c.output_dir = "reproduction/zhou_addition"
    return c
