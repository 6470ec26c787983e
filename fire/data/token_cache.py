"""Tokenize a split once and keep it on disk as one flat array.

A split's cache folder holds `tokens.npy` (every document followed by EOS, in stored
order, memory-mapped when read), `offsets.npy` (where each document's segment starts;
n_docs + 1 entries) and `meta.json` (documents, bytes, tokens). It is keyed by the
dataset, the split string and the tokenizer's fingerprint, and published atomically.
"""

import dataclasses
import json
import pathlib

import numpy as np

from fire.data import atomic, sources
from fire.data.errors import DataError

_COPY_CHUNK = 1 << 24  # tokens per copy from the raw scratch file into the .npy


@dataclasses.dataclass(frozen=True)
class SplitTokens:
    tokens: np.ndarray  # [n_tokens]: doc_0 EOS doc_1 EOS ... (uint16 or int32)
    offsets: np.ndarray  # [n_docs + 1] int64: segment i is tokens[offsets[i]:offsets[i+1]]
    meta: dict  # documents, bytes, tokens (text tokens, EOS not counted), split, tokenizer

    @property
    def doc_lengths(self) -> np.ndarray:
        """[n_docs] text tokens per document (its EOS not counted)."""
        return np.diff(self.offsets) - 1


def split_tokens(data_cfg, corpus: sources.Corpus, tokenizer, split: str) -> SplitTokens:
    folder = sources.dataset_cache_dir(data_cfg, corpus) / f"{atomic.safe_name(split)}.{tokenizer.fingerprint}"
    if not folder.is_dir():
        with atomic.publish_dir(folder) as tmp:
            _write(tmp, corpus.documents(split), tokenizer, split)
    return SplitTokens(
        tokens=np.load(folder / "tokens.npy", mmap_mode="r"),
        offsets=np.load(folder / "offsets.npy"),
        meta=json.loads((folder / "meta.json").read_text()),
    )


def _write(folder: pathlib.Path, docs: sources.Documents, tokenizer, split: str):
    if not len(docs):
        raise DataError(f"{docs.name} has no documents.")
    dtype = np.uint16 if tokenizer.vocab_size <= 1 << 16 else np.int32
    eos = np.array([tokenizer.eos_id], dtype)
    lengths, n_bytes = [], 0
    # Stream to a raw scratch file first: the total length is known only at the end.
    with open(folder / "tokens.raw", "wb") as raw:
        for texts in docs.chunks():
            n_bytes += sum(len(t.encode("utf-8")) for t in texts)
            for ids in tokenizer.encode_batch(texts):
                raw.write(ids.astype(dtype).tobytes() + eos.tobytes())
                lengths.append(len(ids) + 1)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    n = int(offsets[-1])
    scratch = np.memmap(folder / "tokens.raw", dtype, "r", shape=(n,))
    tokens = np.lib.format.open_memmap(folder / "tokens.npy", "w+", dtype, shape=(n,))
    for start in range(0, n, _COPY_CHUNK):
        tokens[start : start + _COPY_CHUNK] = scratch[start : start + _COPY_CHUNK]
    tokens.flush()
    del tokens, scratch
    (folder / "tokens.raw").unlink()
    np.save(folder / "offsets.npy", offsets)
    meta = dict(
        split=split,
        tokenizer=tokenizer.fingerprint,
        documents=len(lengths),
        bytes=n_bytes,
        tokens=n - len(lengths),
    )
    (folder / "meta.json").write_text(json.dumps(meta, indent=1))
