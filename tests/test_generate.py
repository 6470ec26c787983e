"""Generation with a KV cache: the full forward's tokens and logits for every encoding and
both prefill paths, past the training length; one compile; sampling; the command line."""

import os
import re
import shutil
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import write_corpus

from fire.config import from_axes
from fire.encodings import NAMES, LengthError
from fire.evaluation import EvalError, generate_text
from fire.model import IMPLEMENTATIONS, ModelConfig, Transformer
from fire.model.generate import GenerationError, Sampling, decode_program, generate, prefill_program
from fire.training import train

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VOCAB, TRAIN_LEN, PROMPT, NEW = 50, 16, 5, 20
MAX_LEN = PROMPT + NEW  # 25: the last 9 positions are past the training length


def tiny(pe):
    """A random-init model. Tiles of 4 tokens: the blockwise prefill of the 5-token prompt
    spans two, the second ragged. ``learned`` gets a table of 32, past MAX_LEN."""
    options = {"max_len": 32} if pe == "learned" else {}
    cfg = ModelConfig(vocab_size=VOCAB, num_layers=2, d_model=32, num_heads=4, d_ff=64, train_len=TRAIN_LEN,
                      pe=pe, pe_options=options, block_size=4)  # fmt: skip
    model = Transformer(cfg)
    return model, model.init(jax.random.key(0), jnp.zeros((1, 8), jnp.int32))["params"]


def prompt(B=2, seed=0):
    return jax.random.randint(jax.random.key(seed), (B, PROMPT), 0, VOCAB)


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
@pytest.mark.parametrize("pe", NAMES)
def test_cached_greedy_equals_full_forward_greedy(pe, impl):
    model, params = tiny(pe)
    x = prompt()
    cached = np.asarray(generate(model, params, x, NEW, impl=impl))
    assert cached.shape == (2, MAX_LEN) and (cached[:, :PROMPT] == x).all()

    # The reference re-runs the full forward over the sequence at every step, the hooks at
    # the final total length. Its input is padded to MAX_LEN so that it compiles once:
    # causal attention keeps the padding out of the logits at the step's position.
    forward = jax.jit(lambda p, tokens: model.apply({"params": p}, tokens, seq_len=MAX_LEN, impl=impl))
    tokens = np.zeros((2, MAX_LEN), np.int32)
    tokens[:, :PROMPT] = x
    for t in range(PROMPT - 1, MAX_LEN - 1):
        tokens[:, t + 1] = np.argmax(forward(params, tokens)[:, t], -1)
    np.testing.assert_array_equal(cached, tokens)

    # Sharper than argmaxes: every step's logits, teacher-forced. Decode steps are the same
    # after either prefill path (the two forwards agree: test_model), so once is enough.
    if impl != "dense":
        return
    step = lambda p, token, t, caches: model.apply({"params": p}, token, t, caches, method=Transformer.decode)
    decode = jax.jit(step)
    logits, caches = prefill_program(model.cfg, MAX_LEN, impl)(params, x)
    steps = [logits]
    for t in range(PROMPT, MAX_LEN - 1):
        logits, caches = decode(params, tokens[:, t : t + 1], t, caches)
        steps.append(logits)
    full = forward(params, tokens)[:, PROMPT - 1 : MAX_LEN - 1]
    np.testing.assert_allclose(np.stack(steps, 1), full, rtol=1e-5, atol=1e-5)


def test_the_decode_loop_compiles_once(monkeypatch):
    """The step is traced once for the whole loop, and not again for new prompts and seeds
    of the same shape."""
    traces = []
    original = Transformer.decode

    def counted(self, *args):
        traces.append(args[1])
        return original(self, *args)

    monkeypatch.setattr(Transformer, "decode", counted)
    decode_program.cache_clear()
    try:
        model, params = tiny("fire")
        for seed in range(3):
            generate(model, params, prompt(seed=seed), NEW, Sampling(temperature=1.0), jax.random.key(seed))
    finally:
        decode_program.cache_clear()  # no program traced with the counter outlives the test
    assert len(traces) == 1 and isinstance(traces[0], jax.core.Tracer), traces


def test_sampling_is_reproducible_differs_across_seeds_and_top_1_is_greedy():
    model, params = tiny("rope")
    x = prompt()
    hot = Sampling(temperature=1.0)
    a, b = (generate(model, params, x, NEW, hot, jax.random.key(1)) for _ in range(2))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, generate(model, params, x, NEW, hot, jax.random.key(2)))
    greedy = generate(model, params, x, NEW)
    top_1 = generate(model, params, x, NEW, Sampling(temperature=0.8, top_k=1), jax.random.key(3))
    np.testing.assert_array_equal(top_1, greedy)
    small = generate(model, params, x, NEW, Sampling(temperature=1.0, vocab_size=7), jax.random.key(4))
    assert (np.asarray(small)[:, PROMPT:] < 7).all()  # a padded vocabulary's extra ids are never drawn


def test_bad_requests_are_refused_in_one_line():
    model, params = tiny("learned")  # a table of 32
    message = "pe=learned models at most 32 tokens, and a prompt of 5 plus 40 new tokens is 45: ask for at most 27 new"
    with pytest.raises(LengthError, match=message):
        generate(model, params, prompt(), 40)
    with pytest.raises(GenerationError, match="the prompt is empty"):
        generate(model, params, jnp.zeros((1, 0), jnp.int32), 4)
    with pytest.raises(GenerationError, match="max_new_tokens must be at least 1, got 0"):
        generate(model, params, prompt(), 0)
    with pytest.raises(GenerationError, match="unknown attention path 'flash'"):
        generate(model, params, prompt(), 4, impl="flash")
    with pytest.raises(GenerationError, match="got temperature=-1"):
        Sampling(temperature=-1)


# ------------------------------------------------------------------ a trained run


@pytest.fixture(scope="module")
def fire_run(tmp_path_factory):
    """A smoke-trained FIRE run (train_len 64, byte tokenizer) on a small text_dir corpus."""
    corpus = write_corpus(tmp_path_factory.mktemp("corpus"), (("train", 4), ("validation", 2)), 800)
    config = from_axes("pe=fire,data=text_dir,smoke")
    config.data.path, config.data.data_dir = str(corpus), str(corpus / "_cache")
    config.num_steps, config.eval_every, config.mesh.data = 6, 0, 1
    workdir = str(tmp_path_factory.mktemp("runs") / "fire")
    train(config, workdir)
    return workdir


@pytest.mark.slow
def test_a_run_generates_on_both_paths_and_says_where_it_is(fire_run):
    dense = generate_text(fire_run, "the of", 8, impl="dense")
    blockwise = generate_text(fire_run, "the of", 8, impl="blockwise")
    assert dense.text == blockwise.text and dense.text.startswith("the of")
    assert (dense.prompt_tokens, dense.total_len) == (7, 15)  # the leading EOS counts
    assert dense.summary().endswith("total length 15, within the training length 64")


def test_a_workdir_without_a_checkpoint_is_refused(fire_run, tmp_path):
    shutil.copy(os.path.join(fire_run, "config.json"), tmp_path)
    with pytest.raises(EvalError, match=f"no checkpoint in {tmp_path}: train it first"):
        generate_text(str(tmp_path), "the", 4)


def _cli(*args):
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=1"}
    return subprocess.run([sys.executable, "generate.py", *args], cwd=REPO, env=env, capture_output=True, text=True)


@pytest.mark.slow
def test_cli_prints_text_and_tokens_per_second_past_the_training_length(fire_run):
    result = _cli(f"--workdir={fire_run}", "--prompt=the of", "--max_new_tokens=80", "--temperature=0.8",
                  "--top_k=40", "--seed=1")  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.rstrip("\n").splitlines()
    assert lines[0].startswith("the of"), lines
    summary = r"decode: 79 steps in [\d.]+ s, [\d,]+ tokens/s \(compile excluded\); total length 87, past the "
    assert re.fullmatch(summary + "training length 64", lines[-1]), lines[-1]
    print(result.stdout)  # shown with pytest -s


def test_cli_reports_a_workdir_without_a_run_in_one_line(tmp_path):
    result = _cli(f"--workdir={tmp_path}")
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.strip() == f"error: {tmp_path} is not a training run: it has no config.json."
