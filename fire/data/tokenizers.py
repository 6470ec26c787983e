"""Tokenizers: `bytes` (no files) and `sentencepiece` (a model file, or one trained here).

Each reports `n_bytes(ids)`, the UTF-8 text bytes the ids stand for, so a loss in
nats summed over text tokens converts to bits per byte: bits_per_byte(loss_sum_nats, n_bytes).
"""

import hashlib
import io
import math
import pathlib
from typing import Iterable, Protocol, Sequence

import numpy as np

from fire.data import atomic, sources
from fire.data.config import TOKENIZERS
from fire.data.errors import DataError

# Text used to train a sentencepiece model: the first documents of the training split,
# up to about this many characters (plenty for a subword vocabulary; bounds time and memory).
SPM_TRAIN_BYTES = 100_000_000


class Tokenizer(Protocol):
    """What the trainer and evaluator rely on."""

    name: str
    vocab_size: int
    bos_id: int
    eos_id: int
    pad_id: int
    fingerprint: str  # changes whenever the id mapping does

    def encode(self, text: str) -> np.ndarray: ...
    def encode_batch(self, texts: Sequence[str]) -> list[np.ndarray]: ...
    def decode(self, ids) -> str: ...
    def n_bytes(self, ids) -> int: ...


def bits_per_byte(loss_sum_nats: float, n_bytes: int) -> float:
    """Summed loss over the scored text tokens (nats) -> bits per UTF-8 byte of that text.
    Special tokens (EOS, BOS, PAD: :func:`special_ids`) stand for no bytes, so their loss
    belongs in neither sum."""
    return loss_sum_nats / (n_bytes * math.log(2))


def special_ids(tokenizer) -> tuple:
    """The ids that stand for no text (EOS, BOS, PAD; those a tokenizer has), sorted."""
    return tuple(
        sorted({i for i in (getattr(tokenizer, f"{k}_id", None) for k in ("eos", "bos", "pad")) if i is not None})
    )


class ByteTokenizer:
    """UTF-8 bytes: ids 0..255 are the byte values, then PAD, BOS, EOS."""

    name = "bytes"
    fingerprint = "bytes"
    pad_id, bos_id, eos_id = 256, 257, 258
    vocab_size = 259

    def encode(self, text: str) -> np.ndarray:
        return np.frombuffer(text.encode("utf-8"), np.uint8).astype(np.int32)

    def encode_batch(self, texts: Sequence[str]) -> list[np.ndarray]:
        return [self.encode(t) for t in texts]

    def decode(self, ids) -> str:
        ids = np.asarray(ids)
        return ids[ids < 256].astype(np.uint8).tobytes().decode("utf-8", errors="replace")

    def n_bytes(self, ids) -> int:
        return int(np.count_nonzero(np.asarray(ids) < 256))


class SentencePieceTokenizer:
    """A sentencepiece model; n_bytes sums each piece's UTF-8 length (specials: 0).

    Models trained here (`train_sentencepiece`) keep text byte for byte (no
    normalization, no dummy prefix, byte fallback), so n_bytes is exact. For other
    models it is exact up to their normalization and one dummy-prefix space per text.
    """

    name = "sentencepiece"

    def __init__(self, model_proto: bytes):
        import sentencepiece as spm

        try:
            self._sp = spm.SentencePieceProcessor(model_proto=model_proto)
        except RuntimeError:
            raise DataError("data.spm_model is not a SentencePiece model (its bytes do not parse as one).") from None
        self.vocab_size = self._sp.get_piece_size()
        self.eos_id = self._sp.eos_id()
        if self.eos_id < 0:
            raise DataError("the sentencepiece model has no EOS piece; documents are joined with EOS.")
        self.bos_id = self._sp.bos_id() if self._sp.bos_id() >= 0 else self.eos_id
        self.pad_id = self._sp.pad_id() if self._sp.pad_id() >= 0 else self.eos_id
        self.fingerprint = "spm-" + hashlib.sha256(model_proto).hexdigest()[:12]
        self._piece_bytes = np.array([_piece_bytes(self._sp, i) for i in range(self.vocab_size)])

    @classmethod
    def from_file(cls, path) -> "SentencePieceTokenizer":
        path = pathlib.Path(path).expanduser()
        if not path.is_file():
            raise DataError(f"sentencepiece model {path} does not exist.")
        try:
            return cls(path.read_bytes())
        except DataError as e:
            raise DataError(f"{path}: {e}") from None

    def encode(self, text: str) -> np.ndarray:
        return np.asarray(self._sp.encode(text), np.int32)

    def encode_batch(self, texts: Sequence[str]) -> list[np.ndarray]:
        return [np.asarray(ids, np.int32) for ids in self._sp.encode(list(texts))]

    def decode(self, ids) -> str:
        return self._sp.decode(np.asarray(ids).tolist())

    def n_bytes(self, ids) -> int:
        return int(self._piece_bytes[np.asarray(ids)].sum())


def _piece_bytes(sp, i: int) -> int:
    """UTF-8 bytes of text that piece i stands for."""
    if sp.is_control(i) or sp.is_unknown(i):
        return 0
    if sp.is_byte(i):  # byte fallback, <0xAB>
        return 1
    return len(sp.id_to_piece(i).replace("\u2581", " ").encode("utf-8"))


def train_sentencepiece(texts: Iterable[str], vocab_size: int) -> bytes:
    """A unigram model proto that round-trips text exactly; ids: unk 0, bos 1, eos 2, pad 3."""
    import sentencepiece as spm

    def lines():
        budget = SPM_TRAIN_BYTES
        for text in texts:
            for line in text.splitlines():
                if line.strip():
                    yield line
            budget -= len(text)
            if budget <= 0:
                return

    model = io.BytesIO()
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=lines(),
            model_writer=model,
            vocab_size=vocab_size,
            model_type="unigram",
            byte_fallback=True,
            normalization_rule_name="identity",
            add_dummy_prefix=False,
            remove_extra_whitespaces=False,
            split_digits=True,
            hard_vocab_limit=False,  # small corpora get a smaller vocabulary, not an error
            unk_id=0,
            bos_id=1,
            eos_id=2,
            pad_id=3,
            max_sentence_length=1 << 16,
            input_sentence_size=2_000_000,
            shuffle_input_sentence=True,
            num_threads=2,
            minloglevel=2,
        )
    except RuntimeError as e:
        raise DataError(f"sentencepiece training failed (vocab_size={vocab_size}): {e}") from None
    return model.getvalue()


def get_tokenizer(data_cfg):
    """The tokenizer `data_cfg` names; trains and caches a sentencepiece model if asked."""
    if data_cfg.tokenizer == "bytes":
        return ByteTokenizer()
    if data_cfg.tokenizer == "sentencepiece":
        if data_cfg.spm_model:
            return SentencePieceTokenizer.from_file(data_cfg.spm_model)
        return SentencePieceTokenizer(_trained_model(data_cfg))
    raise DataError(f"unknown tokenizer {data_cfg.tokenizer!r}; expected one of {', '.join(TOKENIZERS)}.")


def _trained_model(data_cfg) -> bytes:
    corpus = sources.open_corpus(data_cfg)
    split = data_cfg.train_split
    path = sources.dataset_cache_dir(data_cfg, corpus) / f"spm{data_cfg.spm_vocab_size}.{atomic.safe_name(split)}.model"
    if not path.exists():
        docs = corpus.documents(split)
        proto = train_sentencepiece((t for chunk in docs.chunks() for t in chunk), data_cfg.spm_vocab_size)
        with atomic.publish_file(path) as tmp:
            tmp.write_bytes(proto)
    return path.read_bytes()
