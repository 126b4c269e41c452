"""The prepared cache and ``python -m bench data prepare/verify``.

Preparing writes uint8 ``.npy`` arrays and a manifest; loading maps them and gives the same
dataset as reading the files directly; ``verify`` catches a changed source or cache file;
tiered-style preparation streams (its Python-heap peak stays far below the data size); the
``--download`` path hands over to torchvision (faked here: there is no network).
"""
from __future__ import annotations

import argparse
import dataclasses
import io
import pickle
import sys
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from bench.commands import data as data_cli
from datasets import DatasetError, load_dataset
from datasets import cifar, mini_imagenet, tiered_imagenet
from datasets.cache import CACHE_DIRNAME, CACHE_ENV, load_files, read_manifest

sys.path.insert(0, str(Path(__file__).parent))  # the fixture writers live beside this file
from test_data_formats import (make_cifar_truth, make_truth, partition,  # noqa: E402
                               png_bytes, write_cifar_raw, write_mini_l2l, write_tiered_l2l,
                               write_tiered_mon)


@pytest.fixture(autouse=True)
def _no_cache_from_the_environment(monkeypatch):
    """A cache location set for the user's real data must not leak into the fixtures."""
    monkeypatch.delenv(CACHE_ENV, raising=False)


def bench_data(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench data")
    data_cli.add_arguments(parser)
    return data_cli.run(parser.parse_args([str(a) for a in argv]))


def same_dataset(a, b) -> bool:
    return all(x.class_names == y.class_names and torch.equal(x.labels, y.labels)
               and torch.equal(x.images, y.images)
               for x, y in zip((a.train, a.val, a.test), (b.train, b.val, b.test))) \
        and a.mean == b.mean and a.std == b.std


@pytest.fixture
def mini_root(tmp_path: Path) -> Path:
    return write_mini_l2l(tmp_path / "mini", make_truth())


def test_prepare_then_load_gives_the_same_dataset_memory_mapped(mini_root, capsys):
    direct = mini_imagenet.load_mini_imagenet(mini_root, allow_nonstandard=True)
    assert bench_data("prepare", "mini", "--root", mini_root, "--allow-nonstandard") == 0
    out = capsys.readouterr().out
    assert "prepared mini-ImageNet" in out and "warning: non-standard split accepted" in out
    folder = mini_root / CACHE_DIRNAME / "mini"
    manifest = read_manifest(folder)
    assert manifest["splits"]["train"]["shape"] == [12, 3, 8, 8]
    assert manifest["splits"]["val"]["classes"] == ["n04", "n05"]
    assert manifest["splits"]["test"]["class_sizes"] == [4, 4]
    assert {s["path"] for s in manifest["sources"]} == set(mini_imagenet.L2L.required)
    assert all(len(s["sha256"]) == 64 for s in manifest["sources"])
    assert manifest["nonstandard"] and "3/2/2" in manifest["nonstandard"][0]
    cached = load_dataset("mini", mini_root)  # the registry path finds the cache
    assert same_dataset(cached, direct)
    assert "prepared cache" in cached.source and "NON-STANDARD" in cached.source
    assert np.load(folder / "train_images.npy", mmap_mode="r").shape == (12, 3, 8, 8)


def test_prepare_refuses_a_nonstandard_split_without_the_flag(mini_root, capsys):
    assert bench_data("prepare", "mini", "--root", mini_root) == 2
    err = capsys.readouterr().err
    assert "not the standard split" in err and "--allow-nonstandard" in err
    assert not (mini_root / CACHE_DIRNAME / "mini").exists()


def test_prepare_again_is_a_no_op_unless_forced(mini_root, capsys):
    assert bench_data("prepare", "mini", "--root", mini_root, "--allow-nonstandard") == 0
    created = read_manifest(mini_root / CACHE_DIRNAME / "mini")["created"]
    capsys.readouterr()
    assert bench_data("prepare", "mini", "--root", mini_root, "--allow-nonstandard") == 0
    assert "already prepared" in capsys.readouterr().out
    assert bench_data("prepare", "mini", "--root", mini_root, "--allow-nonstandard",
                      "--force") == 0
    assert "preparing mini-ImageNet" in capsys.readouterr().out
    assert read_manifest(mini_root / CACHE_DIRNAME / "mini")["created"] >= created


def test_verify_passes_then_catches_a_changed_source_and_a_changed_cache(mini_root, capsys):
    assert bench_data("prepare", "mini", "--root", mini_root, "--allow-nonstandard") == 0
    assert bench_data("verify", "mini-imagenet", "--root", mini_root) == 0
    assert "all" in capsys.readouterr().out
    source = mini_root / "mini-imagenet-cache-test.pkl"
    data = bytearray(source.read_bytes())
    data[-30] ^= 0xFF  # same size: only the hash can tell
    source.write_bytes(bytes(data))
    capsys.readouterr()
    assert bench_data("verify", "mini", "--root", mini_root) == 1
    out = capsys.readouterr().out
    assert "FAIL source" in out and "mini-imagenet-cache-test.pkl" in out and "changed" in out
    source.write_bytes(bytes(data[:-30]) + bytes([data[-30] ^ 0xFF]) + bytes(data[-29:]))
    assert bench_data("verify", "mini", "--root", mini_root) == 0
    images = mini_root / CACHE_DIRNAME / "mini" / "val_images.npy"
    cache_bytes = bytearray(images.read_bytes())
    cache_bytes[-1] ^= 0x01
    images.write_bytes(bytes(cache_bytes))
    capsys.readouterr()
    assert bench_data("verify", "mini", "--root", mini_root) == 1
    out = capsys.readouterr().out
    assert "FAIL" in out and "val_images.npy" in out and "the cache changed" in out


def test_loading_refuses_a_stale_cache_and_prepare_rebuilds_it(mini_root, capsys):
    assert bench_data("prepare", "mini", "--root", mini_root, "--allow-nonstandard") == 0
    source = mini_root / "mini-imagenet-cache-train.pkl"
    source.write_bytes(source.read_bytes() + b"\0")
    with pytest.raises(DatasetError, match="stale or damaged.*changed since it was prepared.*"
                                           "--force"):
        load_dataset("mini", mini_root)
    source.write_bytes(source.read_bytes()[:-1])
    (mini_root / CACHE_DIRNAME / "mini" / "test_labels.npy").unlink()
    capsys.readouterr()
    assert bench_data("prepare", "mini", "--root", mini_root, "--allow-nonstandard") == 0
    out = capsys.readouterr().out
    assert "is stale" in out and "test_labels.npy is missing" in out
    assert "prepared cache" in load_dataset("mini", mini_root).source


def test_cache_folder_from_option_or_environment(mini_root, tmp_path, monkeypatch, capsys):
    elsewhere = tmp_path / "fast-disk"
    assert bench_data("prepare", "mini", "--root", mini_root, "--allow-nonstandard",
                      "--cache", elsewhere) == 0
    assert f"{CACHE_ENV}={elsewhere}" in capsys.readouterr().out
    assert (elsewhere / "mini" / "manifest.json").is_file()
    assert not (mini_root / CACHE_DIRNAME).exists()
    monkeypatch.setenv(CACHE_ENV, str(elsewhere))
    assert "prepared cache" in load_dataset("mini", mini_root).source
    assert bench_data("verify", "mini") == 0  # sources found through the manifest's root


def test_verify_without_a_cache_says_how_to_prepare(tmp_path, capsys):
    assert bench_data("verify", "tiered", "--root", tmp_path) == 2
    assert "python -m bench data prepare tiered" in capsys.readouterr().err


def test_download_is_refused_where_there_is_no_stable_source(tmp_path, capsys):
    assert bench_data("prepare", "mini", "--root", tmp_path, "--download") == 2
    err = capsys.readouterr().err
    assert "no stable download source" in err
    for name in (*mini_imagenet.L2L.required, *mini_imagenet.GIDARIS.required):
        assert name in err


def test_built_in_datasets_have_nothing_to_prepare(capsys):
    assert bench_data("prepare", "glyphs") == 2
    assert "no files to prepare" in capsys.readouterr().err
    assert bench_data("prepare", "imagenet-21k") == 2
    assert "unknown dataset" in capsys.readouterr().err


def test_cifar_download_hands_over_to_torchvision(tmp_path, monkeypatch, capsys):
    import torchvision.datasets

    calls = []

    class FakeCIFAR100:  # what torchvision would do: fetch and extract cifar-100-python
        def __init__(self, root, train, download):
            calls.append((root, train, download))
            write_cifar_raw(Path(root), make_cifar_truth(per_class=2))

    monkeypatch.setattr(torchvision.datasets, "CIFAR100", FakeCIFAR100)
    assert bench_data("prepare", "cifar-fs", "--root", tmp_path, "--download") == 0
    assert calls == [(str(tmp_path), True, True), (str(tmp_path), False, True)]
    out = capsys.readouterr().out
    assert "raw CIFAR-100" in out and "train 64 classes" in out
    ds = load_dataset("cifarfs", tmp_path)
    assert "prepared cache" in ds.source and ds.test.n_classes == 20
    assert "baby" in ds.test.class_names

    class Offline:
        def __init__(self, root, train, download):
            raise RuntimeError("<urlopen error [Errno -3] Temporary failure in name resolution>")

    monkeypatch.setattr(torchvision.datasets, "CIFAR100", Offline)
    assert bench_data("prepare", "fc100", "--root", tmp_path / "x", "--download") == 2
    assert "cifar-100-python.tar.gz" in capsys.readouterr().err


def test_prepare_and_verify_fc100_from_raw_cifar(tmp_path, capsys):
    write_cifar_raw(tmp_path, make_cifar_truth(per_class=2))
    direct = cifar.load_fc100(tmp_path)
    assert bench_data("prepare", "fc100", "--root", tmp_path) == 0
    assert same_dataset(load_dataset("fc100", tmp_path), direct)
    assert bench_data("verify", "fc100", "--root", tmp_path) == 0
    out = capsys.readouterr().out
    assert "fc100_train.txt" in out  # the repository's split lists are sources too


def test_omniglot_can_be_prepared_and_verified(tmp_path, capsys):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        for c in range(15):
            for drawer in range(1, 3):
                img = np.full((20, 20), 255, np.uint8)
                img[c:c + 4, 2 * drawer:2 * drawer + 5] = 0
                png = io.BytesIO()
                Image.fromarray(img).save(png, format="PNG")
                archive.writestr(f"images_background/Alpha/character{c + 1:02d}/"
                                 f"{c + 1:04d}_{drawer:02d}.png", png.getvalue())
    (tmp_path / "images_background.zip").write_bytes(buf.getvalue())
    assert bench_data("prepare", "omniglot", "--root", tmp_path) == 2
    assert "1100/100/423" in capsys.readouterr().err
    assert bench_data("prepare", "omniglot", "--root", tmp_path, "--allow-nonstandard") == 0
    manifest = read_manifest(tmp_path / CACHE_DIRNAME / "omniglot")
    assert sum(manifest["splits"][s]["n_classes"] for s in ("train", "val", "test")) == 15
    assert manifest["splits"]["train"]["shape"][1:] == [1, 28, 28]
    assert bench_data("verify", "omniglot", "--root", tmp_path) == 0


def test_large_files_must_be_prepared(tmp_path):
    root = write_tiered_mon(tmp_path, make_truth())
    small_limit = dataclasses.replace(tiered_imagenet.SPEC, direct_limit=100)
    with pytest.raises(DatasetError, match="too large to decode at every start.*python -m bench "
                                           "data prepare tiered"):
        load_files(small_limit, root, allow_nonstandard=True)


# ------------------------------------------------------------------------- streaming memory

N_STREAM, STREAM_SIZE = 2000, 32  # 2000 images of 32 x 32 x 3: 6.1 MB of pixels


def _stream_truth() -> dict:
    rng = np.random.default_rng(7)
    names = [[f"s{s}c{c}" for c in range(4)] for s in range(3)]
    per_class = N_STREAM // 12
    return {split: {n: [rng.integers(0, 256, (STREAM_SIZE, STREAM_SIZE, 3), dtype=np.uint8)
                        for _ in range(per_class)] for n in names[k]}
            for k, split in enumerate(("train", "val", "test"))}


def _peak_python_heap(run) -> int:
    tracemalloc.start()
    try:
        run()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("layout", ["png-pickle", "npz"])
def test_tiered_preparation_streams(tmp_path, monkeypatch, layout):
    truth = _stream_truth()
    if layout == "png-pickle":
        write_tiered_l2l(tmp_path, truth, protocol=4)
        monkeypatch.setattr(tiered_imagenet, "_DECODE_BATCH", 32)
        biggest = tmp_path / "tiered-imagenet" / "train_images_png.pkl"
    else:
        write_tiered_mon(tmp_path, truth)
        monkeypatch.setattr(tiered_imagenet, "NPZ_CHUNK_BYTES", 64 << 10)
        biggest = tmp_path / "train_images.npz"
    pixels = N_STREAM // 12 * 12 * STREAM_SIZE * STREAM_SIZE * 3
    # the measurement can tell: reading one split's file the ordinary way holds all of it
    naive = _peak_python_heap(lambda: (pickle.loads(biggest.read_bytes()) if
                                       layout == "png-pickle" else np.load(biggest)["images"]))
    assert naive > 0.3 * pixels
    peak = _peak_python_heap(lambda: bench_data("prepare", "tiered", "--root", tmp_path,
                                                "--allow-nonstandard"))
    assert peak < 0.15 * pixels, (peak, pixels)
    print(f"{layout}: naive {naive / pixels:.2f}, prepare {peak / pixels:.3f} of the pixels")
    loaded = []
    peak = _peak_python_heap(lambda: loaded.append(load_dataset("tiered", tmp_path)))
    assert peak < 0.1 * pixels, (peak, pixels)  # memory-mapped, not read into the heap
    print(f"{layout}: loading {peak / pixels:.3f} of the pixels")
    ds = loaded[0]
    assert "prepared cache" in ds.source and len(ds.train) + len(ds.val) + len(ds.test) == \
        N_STREAM // 12 * 12
    assert partition(ds) == {s: sorted((frozenset(i.tobytes() for i in imgs)
                                        for imgs in truth[s].values()), key=sorted)
                             for s in truth}


def test_png_pickle_fixture_is_what_learn2learn_reads(tmp_path):
    """The fixture format: a pickled list whose items PIL opens from BytesIO, as learn2learn's
    ``TieredImagenet.__getitem__`` does."""
    truth = make_truth()
    write_tiered_l2l(tmp_path, truth)
    with open(tmp_path / "tiered-imagenet" / "train_images_png.pkl", "rb") as f:
        items = pickle.load(f)
    decoded = {np.asarray(Image.open(io.BytesIO(item))).tobytes() for item in items}
    assert decoded == {img.tobytes() for imgs in truth["train"].values() for img in imgs}
    assert png_bytes(np.asarray(Image.open(io.BytesIO(items[0])))) == items[0]
