"""What `tensorboard --logdir runs` shows: one run per workdir, named by its folder, with the
training scalars. Read with the event protos tensorboardX ships (TensorBoard itself is an
optional viewer)."""

import os
import struct

import pytest
from helpers import write_corpus
from tensorboardX.proto import event_pb2

from fire.config import from_axes
from fire.training import train


def read_events(path: str) -> list:
    """The records of a TFRecord event file: ``u64 length, u32 crc, data, u32 crc``."""
    events = []
    with open(path, "rb") as f:
        while header := f.read(12):
            (length,) = struct.unpack("<Q", header[:8])
            events.append(event_pb2.Event.FromString(f.read(length)))
            f.read(4)
    return events


@pytest.mark.slow
def test_event_files_name_the_run_by_its_folder_and_hold_the_scalars(tmp_path):
    (tmp_path / "corpus").mkdir()
    corpus = write_corpus(tmp_path / "corpus", (("train", 3), ("validation", 2)), 600)
    config = from_axes("pe=fire,data=text_dir,smoke")
    config.data.path, config.data.data_dir = str(corpus), str(tmp_path / "cache")
    config.num_steps, config.log_every, config.eval_every, config.mesh.data = 4, 2, 0, 1
    workdir = tmp_path / "runs" / "tiny_64" / "fire"
    train(config, str(workdir))
    # TensorBoard names a run by the folder holding its event files: the workdir itself.
    found = [(root, f) for root, _, files in os.walk(tmp_path / "runs") for f in files if "tfevents" in f]
    assert [os.path.relpath(root, tmp_path / "runs") for root, _ in found] == [os.path.join("tiny_64", "fire")]
    scalars = {}
    for event in read_events(os.path.join(*found[0])):
        for value in event.summary.value:
            scalars.setdefault(value.tag, []).append(event.step)
    assert scalars["loss"] == [2, 4] and scalars["eval_loss"] == [4]
    assert {"lr", "grad_norm", "tokens_per_s", "pe/blocks_0/c", "pe/blocks_0/L"} <= set(scalars)
