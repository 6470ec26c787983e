"""Golden one-step regression: for every encoding, the loss before and after one training
step of the micro model on a fixed batch must not drift. After an intended change of the
numbers, regenerate with ``python tests/test_golden.py --regenerate`` and review the diff.
"""

import json
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from configs import lm  # noqa: E402
from fire.encodings import NAMES  # noqa: E402
from fire.training import build  # noqa: E402

GOLDEN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "golden", "one_step.json")


def one_step(pe: str) -> dict:
    config = lm.get_config(f"pe={pe},smoke")
    config.optimizer.warmup_steps = 0  # the first step uses the peak learning rate
    config.mesh.data = 1
    run = build(config)
    state = run.init_fn(jax.random.key(0))
    rng = np.random.default_rng(0)
    tokens = jnp.asarray(rng.integers(0, 256, (config.batch_size, config.train_len + 1)), jnp.int32)
    inputs, targets = tokens[:, :-1], tokens[:, 1:]
    state, metrics = run.train_step(state, {"inputs": inputs, "targets": targets})
    nll_T, weight_T = run.score_step(state["params"], inputs, targets, jnp.ones(inputs.shape, jnp.float32))
    loss_sum, count = nll_T.sum(), weight_T.sum()
    return {
        "loss_before": float(metrics["loss"]),
        "grad_norm": float(metrics["grad_norm"]),
        "loss_after": float(loss_sum / count),
    }


# FIRE and one encoding without a bias run by default; every encoding with -m slow.
@pytest.mark.parametrize(
    "pe", [name if name in ("fire", "sinusoidal") else pytest.param(name, marks=pytest.mark.slow) for name in NAMES]
)
def test_one_step_matches_golden(pe):
    with open(GOLDEN) as f:
        golden = json.load(f)[pe]
    got = one_step(pe)
    for key, value in golden.items():
        assert got[key] == pytest.approx(value, rel=1e-4), (key, got, golden)
    assert got["loss_after"] < got["loss_before"]


if __name__ == "__main__":
    if "--regenerate" not in sys.argv:
        sys.exit("usage: python tests/test_golden.py --regenerate")
    values = {pe: one_step(pe) for pe in NAMES}
    with open(GOLDEN, "w") as f:
        json.dump(values, f, indent=2)
    print(json.dumps(values, indent=2))
