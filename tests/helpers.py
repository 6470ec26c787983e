"""Small helpers shared by the tests."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fire.encodings import NAMES, build_encoding

GEOMETRY = dict(num_heads=4, head_dim=16, d_model=64, train_len=64)


def encodings_in_tiers(fast):
    """Every encoding as a pytest parameter, those outside ``fast`` marked ``slow``: a test run
    once per encoding keeps a few in the fast tier (one of each kind of hook it exercises), and
    the slow tier (CI) runs them all."""
    return [name if name in fast else pytest.param(name, marks=pytest.mark.slow) for name in NAMES]


def make_encoding(name, **options):
    geometry = {k: options.pop(k) for k in list(options) if k in GEOMETRY}
    return build_encoding(name, options, **{**GEOMETRY, **geometry})


def encoding_params(enc, seq_len=64):
    """Initial (unboxed) parameters of a standalone encoding module."""
    # Parameters are created in setup(), which any hook call runs.
    variables = enc.init(jax.random.key(0), method=lambda m: m.bias_fn(seq_len) and None)
    return nn.meta.unbox(variables).get("params", {})


def bias(enc, params, q_pos, k_pos, seq_len=64):
    """``BxHxQxK`` bias of ``enc`` with ``params`` on explicit position grids."""
    q_pos, k_pos = jnp.atleast_2d(jnp.asarray(q_pos)), jnp.atleast_2d(jnp.asarray(k_pos))
    return np.asarray(enc.apply({"params": params}, method=lambda m: m.bias_fn(seq_len)(q_pos, k_pos)))


def grid(T):
    return jnp.arange(T, dtype=jnp.int32)[None]


WORDS = (
    "the of and to in is was he for it with as his on be at by had are but from or have an they which "
    "one you were her all she there would their we him been has when who will more no if out so said "
    "what up its about into than them can only other new some could time these two may then do first"
).split()


def write_corpus(root, docs_per_split=(("train", 12), ("validation", 3)), words_per_doc=3000, seed=0):
    """A small text_dir corpus of pseudo-English: ``root/{train,validation}/doc*.txt``."""
    rng = np.random.default_rng(seed)
    for split, n_docs in docs_per_split:
        (root / split).mkdir()
        for d in range(n_docs):
            (root / split / f"doc{d}.txt").write_text(" ".join(rng.choice(WORDS, size=words_per_doc)))
    return root


def final_params(config, workdir):
    """The parameter leaves of a run's latest checkpoint."""
    from fire.checkpoint import Checkpointer
    from fire.training import build

    run = build(config)
    checkpointer = Checkpointer(workdir, keep=2)
    state, _ = checkpointer.restore(checkpointer.latest_step(), run.abstract_state)
    checkpointer.close()
    return jax.tree_util.tree_leaves(jax.device_get(state["params"]))


def smoke_config(corpus, pe="fire", **overrides):
    """8 steps of the micro model on one device on ``corpus`` (batch 8, a log line and metrics
    every step, checkpoints at 4 and 8, no validation before the end); ``overrides`` are dotted
    keys (``{'mesh.data': 2}``)."""
    from configs import lm
    from fire.config import set_dotted

    config = lm.get_config(f"pe={pe},data=text_dir,smoke")
    config.data.path, config.data.data_dir = str(corpus), str(corpus / "_cache")
    config.update(batch_size=8, num_steps=8, log_every=1, eval_every=0, checkpoint_every=4)
    config.mesh.data = 1
    for key, value in overrides.items():
        set_dotted(config, key, value)
    return config


def copy_run(trained, tmp_path, name="run") -> str:
    """A copy of a trained run's workdir (``trained``: ``(config, workdir)``) in ``tmp_path``."""
    import shutil

    target = str(tmp_path / name)
    shutil.copytree(trained[1], target)
    return target
