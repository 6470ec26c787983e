"""Data: corpora, tokenizers, the packed training stream and evaluation windows.

Usage:

    cfg = fire.data.default_config()            # the `data` config block
    tok = fire.data.get_tokenizer(cfg)
    fire.data.prepare(cfg, tok)                 # build / tokenize once (idempotent)
    it = fire.data.train_iterator(cfg, tok, seq_len=512, global_batch_size=8, seed=0)
    batch = next(it)                            # {'inputs', 'targets'}: int32 [8, 512]
    ev = fire.data.eval_windows(cfg, tok, length=2048, protocol=fire.data.Protocol('stream'))
"""

import functools

from fire.data.config import cache_root, default_config
from fire.data.errors import DataError
from fire.data.eval_windows import PROTOCOLS, EvalWindows, Protocol, make_eval_windows
from fire.data.pipeline import TrainIterator, make_train_iterator
from fire.data.sources import open_corpus
from fire.data.token_cache import split_tokens
from fire.data.tokenizers import TOKENIZERS, Tokenizer, bits_per_byte, special_ids
from fire.data.tokenizers import get_tokenizer as _get_tokenizer

__all__ = [
    "DATASETS", "DataError", "EvalWindows", "PROTOCOLS", "Protocol", "TOKENIZERS", "Tokenizer",
    "TrainIterator", "bits_per_byte", "cache_root", "corpus_stats", "default_config",
    "eval_windows", "get_tokenizer", "make_eval_windows", "make_train_iterator", "open_corpus",
    "prepare", "special_ids", "split_tokens", "train_iterator",
]  # fmt: skip

DATASETS = ("shakespeare", "text_dir", "<TFDS catalog name>")


def _storage_errors(fn):
    """Turns a filesystem error while reading or preparing data (a read-only or full data
    folder) into a one-line DataError that names where data goes and how to move it."""

    @functools.wraps(fn)
    def wrapper(data_cfg, *args, **kwargs):
        try:
            return fn(data_cfg, *args, **kwargs)
        except OSError as e:
            where = f" ({e.filename})" if e.filename else ""
            raise DataError(
                f"Cannot prepare or read data under {cache_root(data_cfg)}: {e.strerror or e}{where}. Set "
                f"--config.data.data_dir (or $FIRE_DATA_DIR) to a writable folder with space."
            ) from None

    return wrapper


get_tokenizer = _storage_errors(_get_tokenizer)  # trains and caches a SentencePiece model if asked


@_storage_errors
def prepare(data_cfg, tokenizer=None) -> None:
    """Prepares the dataset, the tokenizer and both splits' token caches. Idempotent;
    safe to call from every process (each artifact is published atomically)."""
    tokenizer = tokenizer or get_tokenizer(data_cfg)
    corpus = open_corpus(data_cfg)
    for split in (data_cfg.train_split, data_cfg.eval_split):
        split_tokens(data_cfg, corpus, tokenizer, split)


@_storage_errors
def train_iterator(
    data_cfg,
    tokenizer,
    seq_len: int,
    global_batch_size: int,
    seed: int,
    process_index: int = 0,
    process_count: int = 1,
) -> TrainIterator:
    """Infinite iterator of {'inputs', 'targets'}: int32 [global_batch_size // process_count,
    seq_len], with get_state() / set_state() for exact resume."""
    tokens = split_tokens(data_cfg, open_corpus(data_cfg), tokenizer, data_cfg.train_split)
    return make_train_iterator(
        tokens, seq_len, global_batch_size, seed, process_index, process_count, data_cfg.num_workers
    )


@_storage_errors
def eval_windows(data_cfg, tokenizer, length: int, protocol: Protocol = Protocol()) -> EvalWindows:
    """Windows of ``length`` tokens from the eval split, cut under ``protocol``."""
    tokens = split_tokens(data_cfg, open_corpus(data_cfg), tokenizer, data_cfg.eval_split)
    return make_eval_windows(tokens, tokenizer, length, protocol.name, protocol.eval_tokens, protocol.stride)


@_storage_errors
def corpus_stats(data_cfg, tokenizer) -> dict[str, dict[str, int]]:
    """{split: {'documents', 'bytes', 'tokens'}} for the train and eval splits."""
    corpus = open_corpus(data_cfg)
    stats = {}
    for split in (data_cfg.train_split, data_cfg.eval_split):
        meta = split_tokens(data_cfg, corpus, tokenizer, split).meta
        stats[split] = {k: meta[k] for k in ("documents", "bytes", "tokens")}
    return stats
