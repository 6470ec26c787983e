"""The `data` config block and where prepared data lives."""

import os
import pathlib

import ml_collections


def default_config() -> ml_collections.ConfigDict:
    """Defaults of the `data` block; every field can be overridden as --config.data.X."""
    return ml_collections.ConfigDict(
        dict(
            # 'shakespeare', 'text_dir' or a TFDS catalog name such as 'c4/en:3.1.0'.
            name="shakespeare",
            path="",  # the folder of *.txt files for name='text_dir'
            # '' -> $FIRE_DATA_DIR or ~/.cache/fire_data; for TFDS catalog names, '' means
            # TFDS's own default data_dir (caches then go to the project cache dir).
            data_dir="",
            # TFDS split strings, slicing included ('train[:10%]').
            train_split="train",
            eval_split="validation",
            text_key="text",  # the TFDS feature holding the document text
            tokenizer="bytes",  # 'bytes' | 'sentencepiece'
            spm_model="",  # '' -> train one on train_split and cache it
            spm_vocab_size=8000,
            num_workers=0,  # grain worker processes for the training stream (0: threads only)
        )
    )


def cache_root(data_cfg) -> pathlib.Path:
    """The project's data folder: prepared builders, token caches, trained tokenizers."""
    root = data_cfg.data_dir or os.environ.get("FIRE_DATA_DIR") or "~/.cache/fire_data"
    return pathlib.Path(root).expanduser().absolute()
