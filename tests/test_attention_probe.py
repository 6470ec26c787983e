"""The attention probe: the weights it reads, their reduction by distance, the command."""

import json
import os
import subprocess
import sys

import jax.numpy as jnp
import numpy as np
import pytest

from fire.evaluation import load_run
from fire.evaluation.attention_probe import layer_weights, probe, reduce
from fire.model import Transformer

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_the_reduction_by_distance_by_hand():
    # One head, one input; each query attends uniformly to the keys it sees.
    weights = np.array([[1, 0, 0], [1 / 2, 1 / 2, 0], [1 / 3, 1 / 3, 1 / 3]])
    out = reduce(weights, np.ones(3), train_len=1)
    d0, d1, d2 = (1 + 1 / 2 + 1 / 3) / 3, (1 / 2 + 1 / 3) / 3, (1 / 3) / 3  # mean over the 3 queries
    assert out["mass_by_distance"]["edges"] == [0, 1, 2, 3]
    np.testing.assert_allclose(out["mass_by_distance"]["mass"], [d0, d1, d2])
    assert out["mean_distance"] == pytest.approx(d1 + 2 * d2)
    # Queries 1 and 2 can look past distance 1: weight 1/2 and 2/3 beyond it.
    assert out["beyond_share"] == pytest.approx((1 / 2 + 2 / 3) / 2)
    assert reduce(weights, np.ones(3), train_len=3)["beyond_share"] is None  # no query past training


@pytest.mark.parametrize("pe", ["alibi", pytest.param("fire", marks=pytest.mark.slow)])  # fire: 29 s
def test_the_sown_weights_are_causal_rows_of_the_softmax_and_change_nothing(trained_run, pe):
    run = load_run(trained_run(pe)[1])
    tokens = np.random.default_rng(0).integers(0, 200, (2, 40)).astype(np.int32)
    weights = layer_weights(run, tokens)
    assert sorted(weights) == ["blocks_0", "blocks_1"]
    for w, rows_per_query in weights.values():
        assert rows_per_query == 2 * run.model_cfg.num_heads
        np.testing.assert_allclose(w.sum(1), rows_per_query, rtol=1e-5)
        assert (np.triu(w, 1) == 0).all() and (w >= 0).all()
    model = Transformer(run.model_cfg)
    plain = model.apply({"params": run.params()}, jnp.asarray(tokens), impl="dense")
    probed, _ = model.apply({"params": run.params()}, jnp.asarray(tokens), impl="dense", mutable=["attention_probe"])
    np.testing.assert_array_equal(np.asarray(plain), np.asarray(probed))
    w, rows_per_query = weights["blocks_0"]
    assert w[0, 0] == pytest.approx(rows_per_query)  # the first query sees only itself


def test_the_probe_writes_its_tables_and_figure(trained_run, tmp_path):
    workdir = trained_run("alibi")[1]
    out = str(tmp_path / "out")
    rows = probe([workdir], ["64", "128"], out, n_sequences=2, log=lambda _: None)
    assert [(r["layer"], r["eval_len"]) for r in rows] == [("blocks_0", 64), ("blocks_1", 64), ("blocks_0", 128),
                                                          ("blocks_1", 128)]  # fmt: skip
    assert rows[0]["beyond_share"] is None and 0 < rows[2]["beyond_share"] < 1
    for r in rows:
        assert sum(r["mass_by_distance"]["mass"]) == pytest.approx(1.0, rel=1e-5)
    assert len(json.load(open(os.path.join(out, "attention.json")))) == 4
    assert "## mean over layers" in open(os.path.join(out, "attention.md")).read()
    assert os.path.exists(os.path.join(out, "attention_mass.png"))
    bad = subprocess.run([sys.executable, "probe_attention.py", f"--workdir={workdir}", "--lengths=0",
                          f"--output_dir={out}"], cwd=REPO, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert bad.returncode == 2 and bad.stderr.strip() == "error: --lengths must be positive, got 0."
