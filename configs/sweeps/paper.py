"""The paper's language-modelling table at its scale: base and large decoder-only LMs on C4,
trained at 512 and 2048, zero-shot log-perplexity at 512 ... 8192 (configs/paper.py): 8
encodings x 2 sizes x 2 lengths = 32 runs, and RoPE-PI as RoPE's runs evaluated with the
interpolation (9 rows).

    python sweep.py --sweep=configs/sweeps/paper.py --dry_run              # runs, tokens, FLOPs
    python sweep.py --sweep=configs/sweeps/paper.py --print_commands       # one command per run
    python sweep.py --sweep=configs/sweeps/paper.py --shard=$I/$N          # on N accelerator hosts

Runs on accelerators as it is; C4 must be prepared for TFDS beforehand (see configs/paper.py).
"""

import ml_collections


def get_config():
    c = ml_collections.ConfigDict()
    c.name = "paper"
    c.config = "configs/paper.py"
    c.axes = dict(
        pe=["nope", "rope", "t5", "alibi", "kerple_log", "sandwich", "fire", "fire_s"],
        size=["base", "large"],
        train_len=[512, 2048],
        data=["c4/en:3.1.0"],
        seed=[0],
    )
    # RoPE-PI takes its scale from the evaluation length: trained, it is RoPE, so it is RoPE's
    # runs evaluated with the interpolation, a row of its own.
    c.eval_variants = [("rope_pi", dict(rows=["rope"], pe="rope_pi"))]
    c.overrides = {}
    c.eval = dict(lengths=[512, 1024, 2048, 4096, 8192], protocol="stream", eval_tokens=1 << 20)
    c.runs_dir = "runs/paper"
    c.output_dir = "reproduction/paper"
    return c
