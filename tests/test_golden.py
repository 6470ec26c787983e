"""Golden one-step regression: for every encoding, the loss before and after one training
step of the micro model on a fixed batch must not drift. After an intended change of the
numbers, regenerate and review the diff:

    python tests/test_golden.py --regenerate                  # every encoding
    python tests/test_golden.py --regenerate pe=fire,fire_s   # only these entries (a new
                                                              # encoding is added); the
                                                              # others stay byte for byte
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


def regenerate(names=None, path: str = GOLDEN, compute=one_step) -> dict:
    """Rewrites the entries of ``names`` (every encoding when None) in the golden file at
    ``path`` with ``compute(pe)``, keeping every other entry and the file's order (new
    names go last); unchanged entries are written back byte for byte. Returns the file's
    values.

    Raises:
      SystemExit: a name that is not a registered encoding.
    """
    unknown = [name for name in names or () if name not in NAMES]
    if unknown:
        sys.exit(f"error: no encoding pe={','.join(unknown)}; valid: {', '.join(NAMES)}.")
    values = {}
    if names is not None and os.path.exists(path):
        with open(path) as f:
            values = json.load(f)
    for pe in NAMES if names is None else names:
        values[pe] = compute(pe)
    with open(path, "w") as f:
        json.dump(values, f, indent=2)
    return values


def main(argv) -> None:
    """``--regenerate`` (every encoding) or ``--regenerate pe=NAME[,NAME...]``."""
    if not argv or argv[0] != "--regenerate" or len(argv) > 2 or (len(argv) == 2 and not argv[1].startswith("pe=")):
        sys.exit("usage: python tests/test_golden.py --regenerate [pe=NAME[,NAME...]]")
    names = argv[1].removeprefix("pe=").split(",") if len(argv) == 2 else None
    values = regenerate(names)
    print(json.dumps({pe: values[pe] for pe in names or NAMES}, indent=2))


def test_regenerating_some_encodings_keeps_the_others_byte_for_byte(tmp_path):
    path = tmp_path / "one_step.json"
    with open(GOLDEN) as f:
        original = f.read()
    path.write_text(original)
    fake = lambda pe: {"loss_before": 1.0, "grad_norm": 2.0, "loss_after": 0.5}
    values = regenerate(["fire", "alibi"], str(path), compute=fake)
    assert values["fire"] == values["alibi"] == fake("fire") and list(values) == list(json.loads(original))
    entry_text = lambda pe, entry: json.dumps({pe: entry}, indent=2)[2:-2]  # as the file has it
    expected = original
    for pe in ("fire", "alibi"):
        expected = expected.replace(entry_text(pe, json.loads(original)[pe]), entry_text(pe, fake(pe)))
    assert expected != original and path.read_text() == expected
    with pytest.raises(SystemExit, match="no encoding pe=firee"):
        regenerate(["firee"], str(path), compute=fake)
    with pytest.raises(SystemExit, match="usage"):
        main(["--regenerate", "fire"])


if __name__ == "__main__":
    main(sys.argv[1:])
