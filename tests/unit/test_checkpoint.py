"""Checkpoint files: atomic writes that survive a full disk, clear errors for corrupt files,
random states restored exactly, and refusal to resume into another run or dataset."""
import errno
import random
from dataclasses import replace

import numpy as np
import pytest
import torch

import bench.store.checkpoint as ckpt
from bench.store.checkpoint import (CheckpointError, CheckpointMismatchError, StorageError,
                              capture_rng, check_compatible, dataset_identity, ensure_writable,
                              load_checkpoint, normalized_config, restore_rng, save_checkpoint)
from bench.common.config import RunConfig, resolve_budget
from datasets.base import ClassSplit, FewShotDataset


def small_dataset(seed: int = 0, source: str = "generated") -> FewShotDataset:
    g = torch.Generator().manual_seed(seed)

    def split(name: str) -> ClassSplit:
        images = torch.randint(0, 256, (12, 1, 8, 8), dtype=torch.uint8, generator=g)
        return ClassSplit(name, images, torch.arange(3).repeat_interleave(4),
                          tuple(f"{name}-{c}" for c in range(3)))

    return FewShotDataset("small", split("train"), split("val"), split("test"), (0.5,),
                          (0.25,), source=source)


def config(**changes) -> RunConfig:
    base = RunConfig("mtl", "small", 5, 1, 0, resolve_budget("smoke", "mtl", "glyphs", 1),
                     episodes=20)
    return replace(base, **changes)


def test_save_then_load_round_trips_and_leaves_no_temporary_file(tmp_path):
    path = tmp_path / "checkpoints" / "run.pt"
    save_checkpoint(path, {"model": {"w": torch.arange(3.0)}, "progress": {"epochs": 2}})
    data = load_checkpoint(path)
    assert data["format"] == ckpt.CHECKPOINT_FORMAT and data["progress"] == {"epochs": 2}
    assert torch.equal(data["model"]["w"], torch.arange(3.0))
    assert [p.name for p in path.parent.iterdir()] == ["run.pt"]


def test_a_full_disk_keeps_the_previous_checkpoint_and_says_what_to_do(tmp_path, monkeypatch):
    path = tmp_path / "run.pt"
    save_checkpoint(path, {"progress": {"epochs": 1}})
    before = path.read_bytes()

    def full(handle, payload):
        handle.write(b"partial bytes")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ckpt, "_write_payload", full)
    with pytest.raises(StorageError) as info:
        save_checkpoint(path, {"progress": {"epochs": 2}})
    message = str(info.value)
    assert str(path) in message and "disk is full" in message and "intact" in message
    assert "rerun the same command" in message
    assert info.value.errno == errno.ENOSPC
    assert path.read_bytes() == before  # the old checkpoint survives, byte for byte
    assert load_checkpoint(path)["progress"] == {"epochs": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["run.pt"]  # no temporary file left


@pytest.mark.parametrize("content", [b"", b"not a checkpoint at all", None])
def test_a_corrupt_checkpoint_names_the_file_and_suggests_restart(tmp_path, content):
    path = tmp_path / "run.pt"
    if content is None:  # a real checkpoint, truncated halfway (a crash during a copy)
        save_checkpoint(path, {"model": {"w": torch.randn(1000)}})
        content = path.read_bytes()[: len(path.read_bytes()) // 2]
    path.write_bytes(content)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    assert str(path) in str(info.value) and "--restart" in str(info.value)


def test_a_foreign_torch_file_is_refused(tmp_path):
    path = tmp_path / "run.pt"
    torch.save({"model": {}}, path)
    with pytest.raises(CheckpointError, match="not a bridgebench.checkpoint/1 checkpoint"):
        load_checkpoint(path)


def test_random_states_are_restored_exactly(tmp_path):
    augment = torch.Generator().manual_seed(3)
    torch.manual_seed(1), np.random.seed(1), random.seed(1)
    state = capture_rng(augment, torch.device("cpu"))
    save_checkpoint(tmp_path / "r.pt", {"rng": state})

    def draws():
        return (torch.rand(3), np.random.rand(3), random.random(),
                torch.rand(3, generator=augment))

    first = draws()
    restore_rng(load_checkpoint(tmp_path / "r.pt")["rng"], augment, torch.device("cpu"))
    second = draws()
    assert torch.equal(first[0], second[0]) and np.array_equal(first[1], second[1])
    assert first[2] == second[2] and torch.equal(first[3], second[3])


def test_dataset_identity_follows_content_not_source():
    a = dataset_identity(small_dataset(source="/data/one"))
    assert dataset_identity(small_dataset(source="/mnt/elsewhere"))["fingerprint"] \
        == a["fingerprint"]
    changed = small_dataset()
    changed.test.images[5, 0, 3, 3] ^= 1  # one pixel of one test image
    assert dataset_identity(changed)["fingerprint"] != a["fingerprint"]
    assert dataset_identity(small_dataset(seed=1))["fingerprint"] != a["fingerprint"]


def test_large_splits_are_fingerprinted_by_a_sample_of_images(monkeypatch):
    monkeypatch.setattr(ckpt, "FULL_HASH_BYTES", 100)
    monkeypatch.setattr(ckpt, "SAMPLED_IMAGES", 4)  # images 0, 4, 7, 11 of 12
    base = dataset_identity(small_dataset())["fingerprint"]
    sampled, unsampled = small_dataset(), small_dataset()
    sampled.train.images[4, 0, 0, 0] ^= 1
    unsampled.train.images[5, 0, 0, 0] ^= 1
    assert dataset_identity(sampled)["fingerprint"] != base
    assert dataset_identity(unsampled)["fingerprint"] == base  # the price of a cheap check


def _payload(cfg: RunConfig, dataset: FewShotDataset, world_size: int = 1) -> dict:
    return {"key": cfg.key, "config": normalized_config(cfg.to_dict()),
            "dataset": dataset_identity(dataset), "world_size": world_size}


def test_check_compatible_accepts_the_same_run_with_other_test_episodes(tmp_path):
    dataset = small_dataset()
    check_compatible(tmp_path / "c.pt", _payload(config(), dataset), key=config().key,
                     config=config(episodes=2000).to_dict(),
                     identity=dataset_identity(dataset), world_size=1)


@pytest.mark.parametrize("now, expect", [
    ({"dataset": small_dataset(seed=1)}, "the dataset changed since this checkpoint"),
    ({"config": config(queries=10)}, "queries: 15 in the checkpoint, 10 now"),
    ({"config": config(budget=replace(config().budget, lr=0.5))},
     "budget.lr: 0.001 in the checkpoint, 0.5 now"),
    ({"world_size": 2}, "1-process run and this run has 2"),
    ({"key": "other_key"}, "belongs to run"),
])
def test_check_compatible_refuses_another_run_and_suggests_restart(tmp_path, now, expect):
    dataset, cfg = small_dataset(), config()
    path = tmp_path / "c.pt"
    with pytest.raises(CheckpointMismatchError) as info:
        check_compatible(path, _payload(cfg, dataset), key=now.get("key", cfg.key),
                         config=now.get("config", cfg).to_dict(),
                         identity=dataset_identity(now.get("dataset", dataset)),
                         world_size=now.get("world_size", 1))
    assert expect in str(info.value) and "--restart" in str(info.value)
    assert str(path) in str(info.value)


def test_a_results_folder_that_cannot_be_created_is_reported_up_front(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(StorageError) as info:
        ensure_writable(blocker / "results")
    assert "is not writable" in str(info.value) and "Nothing was run" in str(info.value)
    ensure_writable(tmp_path / "fine" / "results")  # creates it
    assert (tmp_path / "fine" / "results").is_dir()


@pytest.mark.skipif(hasattr(__import__("os"), "geteuid") and __import__("os").geteuid() == 0,
                    reason="root may write into a read-only folder")
def test_a_read_only_results_folder_is_reported_up_front(tmp_path):
    folder = tmp_path / "results"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        with pytest.raises(StorageError, match="is not writable"):
            ensure_writable(folder)
    finally:
        folder.chmod(0o700)
