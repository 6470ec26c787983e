"""The `data` config block: its keys (default, meaning, accepted values), its checks, and
where prepared data lives."""

import os
import pathlib

import ml_collections

from fire.data import builders
from fire.data.errors import DataError
from fire.keys import Choice, Integer, Key, Text, defaults

TOKENIZERS = ("bytes", "sentencepiece")

# Every field can be overridden as --config.data.X.
DATA = {
    "name": Key("shakespeare", "shakespeare, text_dir, or a TFDS catalog name such as c4/en:3.1.0", Text(empty=False)),
    "path": Key("", "the folder of *.txt files for name=text_dir", Text()),
    "data_dir": Key(
        "",
        "prepared data; '': $FIRE_DATA_DIR or ~/.cache/fire_data (for TFDS catalog names: TFDS's own data_dir, "
        "with the caches in the project's)",
        Text(),
    ),
    "train_split": Key(
        "train", "TFDS split string of the training data; slicing works: 'train[:10%]'", Text(empty=False)
    ),
    "eval_split": Key("validation", "TFDS split string of the validation data", Text(empty=False)),
    "text_key": Key("text", "the TFDS feature holding the document text", Text(empty=False)),
    "tokenizer": Key("bytes", "bytes (no files) or sentencepiece", Choice(TOKENIZERS)),
    "spm_model": Key("", "a SentencePiece model file; '': train one on train_split and cache it", Text()),
    "spm_vocab_size": Key(8000, "vocabulary of a SentencePiece model trained here", Integer(1)),
    "num_workers": Key(0, "grain worker processes for the training stream; 0: threads only", Integer(0)),
}


def default_config() -> ml_collections.ConfigDict:
    """Defaults of the `data` block (:data:`DATA`)."""
    return ml_collections.ConfigDict(defaults(DATA))


def check_relations(data_cfg) -> None:
    """What the block's values need of each other and of the filesystem, once each value is
    one its key accepts: `text_dir`'s folder of files (an empty path never means the current
    folder), a SentencePiece model file that exists and a tokenizer that reads it, a data
    folder that is not a file.

    Raises:
      DataError: naming the value and what to do.
    """
    if data_cfg.name == "text_dir":
        builders.text_dir.split_files(data_cfg.path)
    if data_cfg.spm_model and data_cfg.tokenizer != "sentencepiece":
        raise DataError("data.spm_model is used only with data.tokenizer=sentencepiece.")
    if data_cfg.spm_model and not os.path.isfile(os.path.expanduser(data_cfg.spm_model)):
        raise DataError(f"sentencepiece model {data_cfg.spm_model} does not exist.")
    root = cache_root(data_cfg)
    if root.exists() and not root.is_dir():
        raise DataError(f"The data folder {root} (data.data_dir or $FIRE_DATA_DIR) is a file, not a folder.")


def cache_root(data_cfg) -> pathlib.Path:
    """The project's data folder: prepared builders, token caches, trained tokenizers."""
    root = data_cfg.data_dir or os.environ.get("FIRE_DATA_DIR") or "~/.cache/fire_data"
    return pathlib.Path(root).expanduser().absolute()
