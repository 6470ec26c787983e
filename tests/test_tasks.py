"""The task generators: hand-checked examples, the invariants of each format, determinism,
and one clear error for every bad name, option and length."""

import dataclasses

import numpy as np
import pytest

from fire.tasks import HINTS, REGISTRY, TaskError, build_task, option_keys
from fire.tasks import passkey as passkey_module
from fire.tasks.batches import TaskBatches


class PresetRng:
    """A stand-in for numpy's Generator whose ``integers`` returns preset draws in order."""

    def __init__(self, *draws):
        self.draws = list(draws)

    def integers(self, low, high=None, size=None):
        value = np.asarray(self.draws.pop(0))
        assert value.shape == (() if size is None else (size,))
        return value


def text(task, symbols) -> str:
    return task.vocabulary.separator.join(symbols)


def test_addition_reversed_with_index_hints_is_zhou_et_al_s_example():
    task = build_task("addition")
    example = task.formatted([5, 7, 6], [3, 6, 1])
    assert (text(task, example.prompt), text(task, example.answer)) == ("a6b7c5+a1b6c3=", "a7b3c9")
    carried = task.formatted([9, 9, 9], [9, 9, 9], hint_start=2)  # 999 + 999 = 1998: a 4th hint
    assert (text(task, carried.prompt), text(task, carried.answer)) == ("c9d9e9+c9d9e9=", "c8d9e9f1")


def test_addition_plain_and_unhinted_forms():
    plain = build_task("addition", {"reversed": False, "index_hints": False})
    example = plain.formatted([5, 7, 6], [3, 6, 1])
    assert (text(plain, example.prompt), text(plain, example.answer)) == ("576+361=", "937")
    hinted = build_task("addition", {"reversed": False})
    example = hinted.formatted([5, 7, 6], [3, 6, 1])
    assert (text(hinted, example.prompt), text(hinted, example.answer)) == ("c5b7a6+c3b6a1=", "c9b3a7")
    assert plain.vocabulary.vocab_size == 12 + 3 and hinted.vocabulary.vocab_size == 12 + 102 + 3


@pytest.mark.parametrize("n_digits", [1, 2, 7, 40, 101])
def test_addition_examples_add_up(n_digits):
    task = build_task("addition")
    rng = np.random.default_rng(n_digits)
    for _ in range(50):
        e = task.example(rng, n_digits)
        a, b = "".join(e.prompt[:-1]).split("+")
        digits = lambda hinted: hinted[1::2][::-1]  # drop the hints, most significant first
        assert len(digits(a)) == len(digits(b)) == n_digits
        assert n_digits == 1 or digits(a)[0] != "0"
        assert int(digits(a)) + int(digits(b)) == int(digits("".join(e.answer)))
        hints = e.answer[0::2]  # consecutive hints from the same start as the operands'
        start = HINTS.index(hints[0])
        assert hints == HINTS[start : start + len(hints)] and a[0] == b[0] == hints[0]


def test_copy_reverse_and_the_che_tasks_by_hand():
    copy, reverse = build_task("copy"), build_task("reverse", {"alphabet_size": 3})
    e = copy.example(PresetRng([0, 1, 2, 0]), 4)
    assert (text(copy, e.prompt), text(copy, e.answer)) == ("abca>", "abca")
    e = reverse.example(PresetRng([0, 1, 2, 0]), 4)
    assert (text(reverse, e.prompt), text(reverse, e.answer)) == ("abca>", "acba")
    assert reverse.vocabulary.symbols == ("a", "b", "c", ">")

    odds = build_task("odds_first")
    e = odds.example(PresetRng([0, 0, 1, 1, 0, 1, 0, 1]), 8)  # DeepMind's docstring example
    assert (text(odds, e.prompt), text(odds, e.answer)) == ("00110101=", "01000111")
    e = odds.example(PresetRng([1, 1, 0]), 3)
    assert text(odds, e.answer) == "101"

    missing = build_task("missing_duplicate")
    e = missing.example(PresetRng([0, 1, 1, 0], 6), 8)  # 0110 twice, the 7th symbol hidden
    assert (text(missing, e.prompt), text(missing, e.answer)) == ("011001_0=", "1")
    e = missing.example(PresetRng([1, 0, 1], 1), 7)  # odd length: padded with '#'
    assert (text(missing, e.prompt), text(missing, e.answer)) == ("1_1101#=", "0")


def test_passkey_has_mohtashami_and_jaggi_s_sentences_at_the_asked_length_and_depth():
    task = build_task("passkey", {"depth": 0.0})
    e = task.example(np.random.default_rng(0), task.min_length() + 40)
    prompt = text(task, e.prompt)
    key = text(task, e.answer).replace(" ", "")
    assert 1 <= int(key) <= 50000
    spaced = " ".join(key)
    assert prompt.startswith(
        "There is an important info hidden inside a lot of irrelevant text . Find it and memorize them . I will "
        f"quiz you about the important information there . The pass key is {spaced} . Remember it . {spaced} is "
        "the pass key . The grass is green . The sky is blue ."
    )
    assert prompt.endswith("What is the pass key ? The pass key is")
    at_end = build_task("passkey", {"depth": 1.0}).example(np.random.default_rng(0), task.min_length() + 40)
    assert text(task, at_end.prompt).endswith(f"{spaced} is the pass key . What is the pass key ? The pass key is")
    rng = np.random.default_rng(1)
    uniform = build_task("passkey")
    for length in range(uniform.min_length(), uniform.min_length() + 300, 7):
        e = uniform.example(rng, length)
        assert len(e.prompt) == length
        assert text(uniform, e.prompt).count("The pass key is") == 2  # the needle's and the query's
        uniform.vocabulary.encode_symbols(e.prompt + e.answer)


def test_multikey_asks_one_of_several_distinct_needles():
    task = build_task("multikey", {"num_keys": 5})
    rng = np.random.default_rng(0)
    for length in (task.min_length(), task.min_length() + 1, 400, 1000):
        e = task.example(rng, length)
        assert len(e.prompt) == length
        prompt = list(e.prompt)
        starts = [i for i in range(len(prompt)) if prompt[i : i + 4] == ["The", "special", "magic", "number"]]
        needles = {prompt[i + 5]: prompt[i + 8 : prompt.index(".", i + 8)] for i in starts[:-1]}
        assert len(starts) == 6 and len(needles) == 5  # 5 needles of distinct names, then the query
        asked = prompt[starts[-1] + 5]
        assert prompt[starts[-1] - 9 : starts[-1] - 2] == ["What", "is", "the", "special", "magic", "number", "for"]
        assert list(e.answer) == needles[asked]


@pytest.mark.parametrize("name", list(REGISTRY))
def test_every_task_is_deterministic_given_the_seed_and_encodes_into_its_vocabulary(name):
    task = build_task(name)
    length = task.min_length() + 10
    example = task.example(np.random.default_rng(3), length)
    assert example == task.example(np.random.default_rng(3), length)
    vocab = task.vocabulary
    ids = vocab.encode_symbols(example.prompt + example.answer)
    assert ids.max() < vocab.pad_id and vocab.eos_id == vocab.vocab_size - 1
    assert vocab.decode(list(ids) + [vocab.eos_id, vocab.pad_id]) == vocab.separator.join(
        example.prompt + example.answer + ("<eos>",)
    )
    assert list(vocab.encode(vocab.separator.join(example.prompt))) == list(ids[: len(example.prompt)])
    assert set(option_keys(name)) == {f.name for f in dataclasses.fields(task)}


def test_bad_names_options_and_lengths_get_one_line():
    with pytest.raises(TaskError, match=r"Did you mean addition\?"):
        build_task("adition")
    with pytest.raises(TaskError, match="no option.*revresed.*reversed"):
        build_task("addition", {"revresed": True})
    with pytest.raises(TaskError, match="1 to 101 digits, not 102"):
        build_task("addition").example(np.random.default_rng(0), 102)
    with pytest.raises(TaskError, match="at least 1 items, not 0"):
        build_task("copy").example(np.random.default_rng(0), 0)
    with pytest.raises(TaskError, match=f"at least {build_task('passkey').min_length()} tokens"):
        build_task("passkey").example(np.random.default_rng(0), 10)
    with pytest.raises(TaskError, match="depth is 0 to 1, or -1"):
        build_task("passkey", {"depth": 1.5})
    with pytest.raises(TaskError, match="num_keys is 1 to 50"):
        build_task("multikey", {"num_keys": 0})
    with pytest.raises(TaskError, match="alphabet_size is 2 to 26"):
        build_task("reverse", {"alphabet_size": 30})
    with pytest.raises(TaskError, match="'Z' is not a symbol of task:copy"):
        build_task("copy").vocabulary.encode("abZ")
    assert len(passkey_module.NAMES) == len(set(passkey_module.NAMES)) == 50


@pytest.mark.parametrize("name", list(REGISTRY))
def test_max_tokens_bounds_every_example_and_is_reached(name):
    task = build_task(name)
    rng = np.random.default_rng(0)
    for length in (task.min_length(), task.min_length() + 3, task.min_length() + 17):
        sizes = [len(e.prompt) + len(e.answer) + 1 for e in (task.example(rng, length) for _ in range(300))]
        assert max(sizes) <= task.max_tokens(length)
        assert max(sizes) >= task.max_tokens(length) - 1  # tight: at most the rare carry or longest key missed


def test_task_batches_put_one_example_per_row_with_the_loss_on_its_answer_and_eos():
    task = build_task("reverse", {"alphabet_size": 3})
    vocab = task.vocabulary
    batches = TaskBatches(task, 1, 6, seq_len=13, global_batch_size=8, seed=5)
    batch = batches(7)
    assert {k: (v.shape, v.dtype.name) for k, v in batch.items()} == {
        "inputs": ((8, 13), "int32"), "targets": ((8, 13), "int32"), "weights": ((8, 13), "float32"),
    }  # fmt: skip
    lengths = set()
    for inputs, targets, weights in zip(batch["inputs"], batch["targets"], batch["weights"]):
        row = vocab.decode(np.concatenate([inputs[:1], targets]))  # e.g. "abc>cba<eos>" then padding
        items, answer = row.removesuffix("<eos>").split(">")
        assert answer == items[::-1] and row.endswith("<eos>")
        lengths.add(len(items))
        scored = vocab.decode(targets[weights == 1])
        assert scored == answer + "<eos>" and weights.sum() == len(items) + 1
        assert (targets[weights == 0][len(items) :] == vocab.pad_id).all()  # prompt then padding unscored
        np.testing.assert_array_equal(inputs[1:], targets[:-1])
    assert len(lengths) > 2 and lengths <= set(range(1, 7))
    again = TaskBatches(task, 1, 6, seq_len=13, global_batch_size=8, seed=5)(7)
    assert all((again[k] == batch[k]).all() for k in batch)
    halves = [TaskBatches(task, 1, 6, 13, 8, 5, process_index=p, process_count=2)(7) for p in (0, 1)]
    for k in batch:
        np.testing.assert_array_equal(np.concatenate([h[k] for h in halves]), batch[k])
    assert not (TaskBatches(task, 1, 6, 13, 8, 6)(7)["inputs"] == batch["inputs"]).all()
    assert not (batches(8)["inputs"] == batch["inputs"]).all()


def test_task_batches_refuse_what_they_cannot_make():
    task = build_task("copy")
    with pytest.raises(TaskError, match=r"set --config.train_len=21 or more"):
        TaskBatches(task, 1, 10, seq_len=20, global_batch_size=2, seed=0)
    with pytest.raises(TaskError, match="min_len 5 is above task.max_len 3"):
        TaskBatches(task, 5, 3, seq_len=20, global_batch_size=2, seed=0)
    with pytest.raises(TaskError, match="1 to 101 digits, not 200"):
        TaskBatches(build_task("addition"), 1, 200, seq_len=2000, global_batch_size=2, seed=0)
    TaskBatches(task, 1, 10, seq_len=21, global_batch_size=2, seed=0)(0)  # exactly long enough
