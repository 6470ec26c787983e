"""Scoring a task by greedy decoding: the comparison by hand, the fixed test sets, and the
batched, cached decode against a plain full-forward greedy loop."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fire.evaluation import task_scoring
from fire.evaluation.task_scoring import TaskScore, compare, evaluation_examples, score_task
from fire.model import ModelConfig, Transformer
from fire.tasks import TaskError, build_task

E = 9  # an EOS id for the hand-made rows


def test_compare_by_hand():
    gold = np.array([3, 4, E])
    rows = np.array([
        [3, 4, E, E],  # exact
        [3, 5, E, E],  # one token wrong
        [3, 4, 4, E],  # the EOS late: not exact, 2 of 3 tokens
        [3, 4, 4, 4],  # no EOS at all
        [E, E, E, E],  # ended at once: only the EOS position agrees
    ])  # fmt: skip
    score = compare(rows, [gold] * 5, E)
    assert dataclasses_tuple(score) == (5, 1, 15, 3 + 2 + 2 + 2 + 1)
    assert score.exact_match == 0.2 and score.token_accuracy == 10 / 15
    short = compare(np.array([[3]]), [gold], E)  # fewer new tokens than the gold has
    assert dataclasses_tuple(short) == (1, 0, 3, 1)


def dataclasses_tuple(score: TaskScore) -> tuple:
    return (score.n_examples, score.exact, score.n_answer_tokens, score.correct_tokens)


def test_evaluation_examples_are_fixed_by_the_eval_seed_and_nest():
    task = build_task("addition")
    first = evaluation_examples(task, 5, 20, eval_seed=1234)
    assert first == evaluation_examples(task, 5, 20, eval_seed=1234)
    assert evaluation_examples(task, 5, 8, eval_seed=1234) == first[:8]
    assert evaluation_examples(task, 5, 20, eval_seed=1235) != first
    assert len({e.prompt for e in first}) == 20
    with pytest.raises(TaskError, match="1 to 101 digits, not 0"):
        evaluation_examples(task, 0, 5, 0)


def tiny_model(vocab_size: int, pe: str = "fire"):
    cfg = ModelConfig(vocab_size=vocab_size, num_layers=2, d_model=32, num_heads=4, d_ff=64, train_len=16, pe=pe)
    model = Transformer(cfg)
    return model, model.init(jax.random.key(1), jnp.zeros((1, 8), jnp.int32))["params"]


@pytest.mark.parametrize("pe", ["rope", pytest.param("fire", marks=pytest.mark.slow)])  # fire: ~15 s
def test_score_task_equals_a_full_forward_greedy_loop(pe):
    task = build_task("reverse", {"alphabet_size": 4})
    vocab = task.vocabulary
    model, params = tiny_model(vocab.vocab_size, pe)
    examples = evaluation_examples(task, 3, 5, 0) + evaluation_examples(task, 6, 4, 0)  # two prompt lengths
    score = score_task(model, params, task, examples, batch_size=3)

    budget = max(len(e.answer) for e in examples) + 2  # the longest answer, its EOS, one more
    forward = jax.jit(lambda p, t, seq_len: model.apply({"params": p}, t, seq_len=seq_len), static_argnums=2)
    reference = TaskScore()
    for e in examples:
        prompt = list(vocab.encode_symbols(e.prompt))
        total = len(prompt) + budget
        tokens = prompt + [0] * budget
        for t in range(len(prompt) - 1, total - 1):
            tokens[t + 1] = int(np.argmax(forward(params, jnp.array([tokens]), total)[0, t]))
            if tokens[t + 1] == vocab.eos_id:
                tokens[t + 2 :] = [vocab.eos_id] * (total - t - 2)
                break
        gold = np.concatenate([vocab.encode_symbols(e.answer), [vocab.eos_id]])
        reference = reference.add(compare(np.array([tokens[len(prompt) :]]), [gold], vocab.eos_id))
    assert score == reference and score.n_examples == 9


def test_score_task_groups_pads_and_slices_each_prompt_s_answer(monkeypatch):
    """With a generator that answers every prompt correctly but one, the score counts
    exactly that one miss, whatever the grouping by prompt length and the batch padding."""
    task = build_task("copy", {"alphabet_size": 3})
    vocab = task.vocabulary
    examples = evaluation_examples(task, 2, 5, 0) + evaluation_examples(task, 4, 3, 0)
    wrong = examples[6].prompt

    def oracle(model, params, prompt_BxP, max_new, impl, eos_id):
        rows = []
        for prompt in np.asarray(prompt_BxP):
            answer = list(prompt[:-1])  # copy: the items before '>'
            if vocab.decode(prompt) == "".join(wrong):
                answer[-1] = (answer[-1] + 1) % 3
            rows.append(list(prompt) + (answer + [eos_id] * max_new)[:max_new])
        return type("Out", (), {"tokens_BxS": np.array(rows)})

    monkeypatch.setattr(task_scoring, "generate", oracle)
    score = score_task(None, None, task, examples, batch_size=2)
    assert dataclasses_tuple(score) == (8, 7, 5 * 3 + 3 * 5, 5 * 3 + 3 * 5 - 1)
