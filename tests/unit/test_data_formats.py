"""Readers for every accepted layout of mini-ImageNet, tiered-ImageNet, CIFAR-FS and FC100.

Tiny fixtures (a few classes of a few images) are written by the tests in each layout; the
same data must load to the same class split whatever the layout, and damaged files (truncated,
corrupt, an HTML page instead of a pickle, an archive left packed) must give errors that name
the file and say what to do. The ``write_*`` helpers are reused by ``test_cache.py``.
"""
from __future__ import annotations

import io
import os
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from datasets import DATASETS, DatasetError, FewShotDataset, load_dataset
from datasets import cifar, mini_imagenet, tiered_imagenet
from datasets.readers import (first_pickled_item, iter_npz_rows, load_pickle, sniff,
                              stream_pickled_list)

SPLITS = ("train", "val", "test")
#: A tiny ImageNet-like dataset: split -> class name -> images (H x W x 3 uint8).
Truth = dict[str, dict[str, list[np.ndarray]]]


def make_truth(classes=(("n01", "n02", "n03"), ("n04", "n05"), ("n06", "n07")), per_class=4,
               size=8, seed=0) -> Truth:
    rng = np.random.default_rng(seed)
    return {split: {name: [rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
                           for _ in range(per_class)] for name in names}
            for split, names in zip(SPLITS, classes)}


def _rows(truth_split: dict[str, list[np.ndarray]], seed: int = 1):
    """Images of a split in a shuffled order, with their class names."""
    items = [(name, img) for name, imgs in truth_split.items() for img in imgs]
    order = np.random.default_rng(seed).permutation(len(items))
    return [items[i] for i in order]


def png_bytes(img: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    return buf.getvalue()


def _dump(obj, path: Path, protocol: int = 2) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=protocol)
    return path


def write_mini_l2l(root: Path, truth: Truth) -> Path:
    for split, fname in zip(SPLITS, mini_imagenet.L2L.required):
        rows = _rows(truth[split])
        class_dict: dict[str, list[int]] = {}
        for i, (name, _) in enumerate(rows):
            class_dict.setdefault(name, []).append(i)
        _dump({"image_data": np.stack([img for _, img in rows]), "class_dict": class_dict},
              root / fname, protocol=4)
    return root


def write_mini_gidaris(root: Path, truth: Truth, names: bool = True) -> Path:
    ids = {name: k for k, name in enumerate(n for s in SPLITS for n in sorted(truth[s]))}
    for split, fname in zip(SPLITS, mini_imagenet.GIDARIS.required):
        rows = _rows(truth[split], seed=2)
        data = {"data": np.stack([img for _, img in rows]),
                "labels": [ids[name] for name, _ in rows]}
        if names:
            data["catname2label"] = {n: ids[n] for n in truth[split]}
        _dump(data, root / fname)
    return root


def write_tiered_l2l(root: Path, truth: Truth, protocol: int = 2) -> Path:
    folder = root / "tiered-imagenet"
    for split in SPLITS:
        rows = _rows(truth[split])
        names = sorted(truth[split])
        _dump([png_bytes(img) for _, img in rows], folder / f"{split}_images_png.pkl", protocol)
        _dump({"label_specific": np.array([names.index(n) for n, _ in rows]),
               "label_specific_str": names}, folder / f"{split}_labels.pkl", protocol)
    return root


def write_tiered_mon(root: Path, truth: Truth, compressed: bool = False) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    save = np.savez_compressed if compressed else np.savez
    for split in SPLITS:
        rows = _rows(truth[split])
        names = sorted(truth[split])
        save(root / f"{split}_images.npz", images=np.stack([img for _, img in rows]))
        _dump({"labels": [names.index(n) for n, _ in rows]}, root / f"{split}_labels.pkl")
    return root


# ---------------------------------------------------------------------------------- CIFAR

def make_cifar_truth(per_class: int = 3, seed: int = 0) -> dict[str, list[np.ndarray]]:
    """Every CIFAR-100 class with ``per_class`` 32 x 32 images."""
    rng = np.random.default_rng(seed)
    fine, _ = cifar.cifar100_classes()
    return {name: [rng.integers(0, 256, (32, 32, 3), dtype=np.uint8) for _ in range(per_class)]
            for name in fine}


def write_cifar_raw(root: Path, truth: dict[str, list[np.ndarray]], n_test: int = 1) -> Path:
    """torchvision's ``cifar-100-python``: the last ``n_test`` images of a class in ``test``."""
    fine, superclass = cifar.cifar100_classes()
    coarse_names = sorted(set(superclass.values()))
    folder = root / "cifar-100-python"
    for part in ("train", "test"):
        rows = [(k, img) for k, name in enumerate(fine)
                for img in (truth[name][:-n_test] if part == "train" else truth[name][-n_test:])]
        order = np.random.default_rng(3).permutation(len(rows))
        rows = [rows[i] for i in order]
        _dump({"data": np.stack([img.transpose(2, 0, 1).reshape(-1) for _, img in rows]),
               "fine_labels": [k for k, _ in rows],
               "coarse_labels": [coarse_names.index(superclass[fine[k]]) for k, _ in rows]},
              folder / part)
    _dump({"fine_label_names": list(fine), "coarse_label_names": coarse_names}, folder / "meta")
    return root


def write_cifar_pickles(root: Path, truth: dict[str, list[np.ndarray]], dataset: str,
                        prefix: str | None = None, relabel: bool = False) -> Path:
    """MetaOptNet pickles (``CIFAR_FS_*``/``FC100_*``, or ``prefix`` + ``{split}.pickle``)."""
    fine, _ = cifar.cifar100_classes()
    start = 0
    for split in SPLITS:
        names = cifar.standard_classes(dataset, split)
        rows = _rows({n: truth[n] for n in names}, seed=4)
        labels = [fine.index(n) for n, _ in rows]
        if relabel:  # dense ids 0..a-1, a..b-1, ...: not CIFAR-100 ids
            labels = [start + names.index(n) for n, _ in rows]
            start += len(names)
        default = "CIFAR_FS_" if dataset == "cifar-fs" else "FC100_"
        _dump({"data": np.stack([img for _, img in rows]), "labels": labels},
              root / f"{default if prefix is None else prefix}{split}.pickle")
    return root


def write_cifar_folders(root: Path, truth: dict[str, list[np.ndarray]]) -> Path:
    base = root / "cifar100"
    for split in SPLITS:
        names = cifar.standard_classes("cifar-fs", split)
        (base / "splits" / "bertinetto").mkdir(parents=True, exist_ok=True)
        (base / "splits" / "bertinetto" / f"{split}.txt").write_text("\n".join(names) + "\n")
        for name in names:
            (base / "data" / name).mkdir(parents=True, exist_ok=True)
            for i, img in enumerate(truth[name]):
                Image.fromarray(img).save(base / "data" / name / f"{name}_{i:03d}.png")
    return root


# -------------------------------------------------------------------------------- comparing

def _class_bytes(split, k: int) -> list[bytes]:
    images = split.images[split.indices_of_class(k)].permute(0, 2, 3, 1).contiguous().numpy()
    return sorted(img.tobytes() for img in images)


def partition(ds: FewShotDataset) -> dict[str, list[frozenset[bytes]]]:
    """Per split, the classes as sets of image bytes (HWC), sorted: layout-independent."""
    return {s.name: sorted((frozenset(_class_bytes(s, k)) for k in range(s.n_classes)),
                           key=sorted)
            for s in (ds.train, ds.val, ds.test)}


def truth_partition(truth: Truth) -> dict[str, list[frozenset[bytes]]]:
    return {split: sorted((frozenset(img.tobytes() for img in imgs)
                           for imgs in truth[split].values()), key=sorted)
            for split in SPLITS}


def by_name(ds: FewShotDataset) -> dict[str, dict[str, list[bytes]]]:
    """Per split, class name -> sorted image bytes."""
    return {s.name: {name: _class_bytes(s, k) for k, name in enumerate(s.class_names)}
            for s in (ds.train, ds.val, ds.test)}


# ------------------------------------------------------------------------------------ tests

@pytest.fixture(autouse=True)
def _no_cache_from_the_environment(monkeypatch):
    """A cache location set for the user's real data must not leak into the fixtures."""
    monkeypatch.delenv("BRIDGEBENCH_CACHE", raising=False)


def test_registry_names_and_aliases():
    for alias, name in (("mini-imagenet", "mini"), ("miniimagenet", "mini"),
                        ("tiered-imagenet", "tiered"), ("cifarfs", "cifar-fs"),
                        ("cifar_fs", "cifar-fs"), ("fc100", "fc100")):
        assert DATASETS.canonical(alias) == name
    assert DATASETS.get("mini").image_size == 84 and DATASETS.get("fc100").image_size == 32
    assert all(DATASETS.get(n).needs_files for n in ("mini", "tiered", "cifar-fs", "fc100"))


def test_mini_layouts_load_to_the_same_split(tmp_path):
    truth = make_truth()
    a = mini_imagenet.load_mini_imagenet(write_mini_l2l(tmp_path / "l2l", truth),
                                         allow_nonstandard=True)
    b = mini_imagenet.load_mini_imagenet(write_mini_gidaris(tmp_path / "mon", truth),
                                         allow_nonstandard=True)
    c = mini_imagenet.load_mini_imagenet(write_mini_gidaris(tmp_path / "anon", truth, False),
                                         allow_nonstandard=True)
    assert partition(a) == partition(b) == partition(c) == truth_partition(truth)
    assert by_name(a) == by_name(b)  # same names, so identical labels
    assert a.train.class_names == ("n01", "n02", "n03")
    assert c.train.class_names == ("train:0", "train:1", "train:2")
    assert a.mean == pytest.approx((0.4721, 0.4533, 0.4100), abs=1e-4)
    assert a.std == pytest.approx((0.2772, 0.2678, 0.2845), abs=1e-4)
    assert a.train.images.shape == (12, 3, 8, 8) and a.train.images.dtype == torch.uint8
    assert "learn2learn" in a.source and "NON-STANDARD" in a.source


def test_mini_is_found_in_a_subfolder_and_through_the_registry(tmp_path):
    write_mini_l2l(tmp_path / "mini-imagenet", make_truth())
    with pytest.raises(DatasetError, match="--allow-nonstandard"):
        load_dataset("mini-imagenet", tmp_path)
    ds = mini_imagenet.load_mini_imagenet(tmp_path, allow_nonstandard=True)
    assert ds.name == "mini" and ds.train.n_classes == 3


def test_nonstandard_split_is_refused_with_the_counts(tmp_path):
    write_mini_l2l(tmp_path, make_truth())
    with pytest.raises(DatasetError) as err:
        mini_imagenet.load_mini_imagenet(tmp_path)
    message = str(err.value)
    assert "3/2/2 classes" in message and "64/16/20" in message
    assert "python -m bench data prepare mini" in message and "--allow-nonstandard" in message


@pytest.mark.parametrize("protocol", [2, 4])
def test_tiered_layouts_load_to_the_same_split(tmp_path, protocol):
    truth = make_truth(classes=(("a", "b", "c", "d"), ("e", "f"), ("g", "h", "i")))
    a = tiered_imagenet.load_tiered_imagenet(write_tiered_l2l(tmp_path / "l2l", truth, protocol),
                                             allow_nonstandard=True)
    b = tiered_imagenet.load_tiered_imagenet(write_tiered_mon(tmp_path / "mon", truth),
                                             allow_nonstandard=True)
    c = tiered_imagenet.load_tiered_imagenet(
        write_tiered_mon(tmp_path / "monz", truth, compressed=True), allow_nonstandard=True)
    assert partition(a) == partition(b) == partition(c) == truth_partition(truth)
    assert a.train.class_names == ("a", "b", "c", "d")  # from label_specific_str
    assert b.val.class_names == ("val:0", "val:1")  # MetaOptNet labels carry no names
    assert "PNG" in a.source and "npz" in b.source


def test_tiered_png_items_may_be_uint8_arrays(tmp_path):
    truth = make_truth()
    write_tiered_l2l(tmp_path, truth)
    folder = tmp_path / "tiered-imagenet"
    for split in SPLITS:  # Ren et al.'s pickles hold cv2.imencode arrays, not bytes
        items = load_pickle(folder / f"{split}_images_png.pkl")
        _dump([np.frombuffer(b, dtype=np.uint8) for b in items],
              folder / f"{split}_images_png.pkl")
    ds = tiered_imagenet.load_tiered_imagenet(tmp_path, allow_nonstandard=True)
    assert partition(ds) == truth_partition(truth)


def test_cifar_fs_layouts_load_to_the_same_standard_split(tmp_path):
    truth = make_cifar_truth()
    raw = cifar.load_cifar_fs(write_cifar_raw(tmp_path / "raw", truth))
    mon = cifar.load_cifar_fs(write_cifar_pickles(tmp_path / "mon", truth, "cifar-fs"))
    rfs = cifar.load_cifar_fs(write_cifar_pickles(tmp_path / "rfs" / "CIFAR-FS", truth,
                                                  "cifar-fs", prefix="").parent)
    folders = cifar.load_cifar_fs(write_cifar_folders(tmp_path / "l2l", truth))
    expected = {s: {n: sorted(img.tobytes() for img in truth[n])
                    for n in cifar.standard_classes("cifar-fs", s)} for s in SPLITS}
    for ds in (raw, mon, rfs, folders):
        assert by_name(ds) == expected, ds.source
        assert (ds.train.n_classes, ds.val.n_classes, ds.test.n_classes) == (64, 16, 20)
        assert ds.mean == pytest.approx((0.5074, 0.4867, 0.4411), abs=1e-4)
        assert ds.std == pytest.approx((0.2675, 0.2566, 0.2763), abs=1e-4)
    assert torch.equal(raw.train.labels.sort().values, mon.train.labels.sort().values)


def test_fc100_layouts_load_to_the_same_superclass_split(tmp_path):
    truth = make_cifar_truth()
    raw = cifar.load_fc100(write_cifar_raw(tmp_path / "raw", truth))
    mon = cifar.load_fc100(write_cifar_pickles(tmp_path / "mon", truth, "fc100"))
    assert by_name(raw) == by_name(mon)
    fine, superclass = cifar.cifar100_classes()
    train_ids = sorted(fine.index(n) for n in raw.train.class_names)
    assert train_ids == [0, 1, 5, 8, 9, 10, 12, 13, 16, 17, 20, 22, 23, 25, 27, 28, 29, 32, 33,
                         37, 39, 40, 41, 44, 47, 48, 49, 51, 52, 53, 54, 56, 57, 58, 59, 60, 61,
                         62, 67, 68, 69, 70, 71, 73, 76, 78, 81, 82, 83, 84, 85, 86, 87, 89, 90,
                         91, 92, 93, 94, 96]  # [MTL]'s FC100 train ids (docs/references.md)
    supers = [{superclass[n] for n in s.class_names} for s in (raw.train, raw.val, raw.test)]
    assert [len(s) for s in supers] == [12, 4, 4] and not (supers[0] & supers[2])


def test_standard_cifar_lists_partition_cifar100():
    fine, _ = cifar.cifar100_classes()
    for dataset, sizes in (("cifar-fs", (64, 16, 20)), ("fc100", (60, 20, 20))):
        lists = [cifar.standard_classes(dataset, s) for s in SPLITS]
        assert tuple(map(len, lists)) == sizes
        assert sorted(n for names in lists for n in names) == sorted(fine)
    assert "baby" in cifar.standard_classes("cifar-fs", "test")
    assert "otter" in cifar.standard_classes("cifar-fs", "val")


def test_cifar_pickles_with_swapped_classes_are_not_standard(tmp_path):
    truth = make_cifar_truth(per_class=2)
    write_cifar_pickles(tmp_path, truth, "cifar-fs")
    fine, _ = cifar.cifar100_classes()
    train, test = (load_pickle(tmp_path / f"CIFAR_FS_{s}.pickle") for s in ("train", "test"))
    apple, baby = fine.index("apple"), fine.index("baby")  # a train and a test class
    for part, old, new in ((train, apple, baby), (test, baby, apple)):
        part["labels"] = [new if label == old else label for label in part["labels"]]
    _dump(train, tmp_path / "CIFAR_FS_train.pickle")
    _dump(test, tmp_path / "CIFAR_FS_test.pickle")
    with pytest.raises(DatasetError, match="differ from the standard cifar-fs train split "
                                           r"\(not in it: baby; missing: apple\)"):
        cifar.load_cifar_fs(tmp_path)
    ds = cifar.load_cifar_fs(tmp_path, allow_nonstandard=True)
    assert "apple" in ds.test.class_names and "NON-STANDARD" in ds.source
    assert (ds.train.n_classes, ds.val.n_classes, ds.test.n_classes) == (64, 16, 20)


def test_cifar_pickles_with_dense_labels_get_split_names(tmp_path):
    truth = make_cifar_truth(per_class=2)
    ds = cifar.load_fc100(write_cifar_pickles(tmp_path, truth, "fc100", relabel=True))
    assert ds.train.class_names[0] == "train:0" and ds.test.class_names[0] == "test:80"
    expected = {s: sorted((frozenset(img.tobytes() for img in truth[n])
                           for n in cifar.standard_classes("fc100", s)), key=sorted)
                for s in SPLITS}
    assert partition(ds) == expected


# ------------------------------------------------------------------------- damaged and missing

def test_missing_files_say_where_what_and_how(tmp_path):
    for name, needles in (
            ("mini", [*mini_imagenet.L2L.required, *mini_imagenet.GIDARIS.required,
                      "1I3itTXpXxGV68olxM5roceUMG8itH9Xj", "12V7qi-AjrYi6OoJdYcN_k502BM_jcP8D"]),
            ("tiered", ["train_images_png.pkl", "val_labels.pkl", "test_images.npz",
                        "1g1aIDy2Ar_MViF2gDXFYDBTR-HYecV07", "1nVGCTd9ttULRXFezh4xILQ9lUkg0WZCG"]),
            ("cifar-fs", ["CIFAR_FS_train.pickle", "cifar100/data", "splits/bertinetto",
                          "cifar-100-python/meta", "--download", "cifar-100-python.tar.gz"]),
            ("fc100", ["FC100_val.pickle", "FC100/train.pickle", "cifar-100-python/train",
                       "1_ZsLyqI487NRDQhwvI7rg86FK3YAZvz1"])):
        with pytest.raises(DatasetError) as err:
            load_dataset(name, tmp_path / "nowhere")
        message = str(err.value)
        assert str(tmp_path / "nowhere") in message and "does not exist" in message
        for needle in needles:
            assert needle in message, (name, needle)


def test_an_incomplete_set_is_reported(tmp_path):
    write_mini_l2l(tmp_path, make_truth())
    (tmp_path / "mini-imagenet-cache-test.pkl").unlink()
    with pytest.raises(DatasetError, match="Incomplete sets found.*mini-imagenet-cache-test.pkl"):
        mini_imagenet.load_mini_imagenet(tmp_path, allow_nonstandard=True)


def _html_page() -> bytes:
    return (b"<!DOCTYPE html><html><head><title>Google Drive - Virus scan warning</title>"
            b"</head><body>Google Drive can't scan this file for viruses.</body></html>")


def test_html_saved_instead_of_a_pickle_gets_its_own_message(tmp_path):
    write_mini_l2l(tmp_path, make_truth())
    (tmp_path / "mini-imagenet-cache-train.pkl").write_bytes(_html_page())
    with pytest.raises(DatasetError) as err:
        mini_imagenet.load_mini_imagenet(tmp_path, allow_nonstandard=True)
    message = str(err.value)
    assert "mini-imagenet-cache-train.pkl is an HTML web page" in message
    assert "Virus scan warning" in message and "learn2learn issue #367" in message
    assert "download it again" in message
    assert sniff(tmp_path / "mini-imagenet-cache-train.pkl") == "html"


def test_truncated_pickle_is_reported_as_truncated(tmp_path):
    write_mini_gidaris(tmp_path, make_truth())
    path = tmp_path / mini_imagenet.GIDARIS.required[1]
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(DatasetError, match=r"_val\.pickle is truncated.*download it again"):
        mini_imagenet.load_mini_imagenet(tmp_path, allow_nonstandard=True)


def test_corrupt_pickle_is_reported_as_corrupt(tmp_path):
    write_mini_l2l(tmp_path, make_truth())
    path = tmp_path / "mini-imagenet-cache-test.pkl"
    data = bytearray(path.read_bytes())
    data[2:40] = bytes(range(200, 238))  # garbage opcodes right after the protocol header
    path.write_bytes(bytes(data))
    with pytest.raises(DatasetError, match=r"test\.pkl is corrupt"):
        mini_imagenet.load_mini_imagenet(tmp_path, allow_nonstandard=True)


@pytest.mark.parametrize("content, needle", [
    (b"", "empty"), (b"PK\x03\x04" + bytes(60), "zip archive: extract it"),
    (b"\x1f\x8b" + bytes(60), "gzip-compressed"),
    (b"version https://git-lfs.github.com/spec/v1\noid sha256:ab\nsize 9\n", "git lfs pull")])
def test_wrong_kinds_of_file_are_named(tmp_path, content, needle):
    write_mini_l2l(tmp_path, make_truth())
    (tmp_path / "mini-imagenet-cache-validation.pkl").write_bytes(content)
    with pytest.raises(DatasetError, match=needle):
        mini_imagenet.load_mini_imagenet(tmp_path, allow_nonstandard=True)


def test_a_pickle_that_would_run_code_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo should-not-run",))

    path = _dump({"image_data": Evil()}, tmp_path / "mini-imagenet-cache-train.pkl")
    with pytest.raises(DatasetError, match="refusing to load posix.system|refusing to load os"):
        load_pickle(path)


def test_wrong_pickle_content_is_explained(tmp_path):
    write_mini_l2l(tmp_path, make_truth())
    _dump({"data": np.zeros((2, 8, 8, 3), np.uint8)}, tmp_path / "mini-imagenet-cache-val"
                                                                 "idation.pkl")
    with pytest.raises(DatasetError, match="not a learn2learn mini-ImageNet cache.*'data'"):
        mini_imagenet.load_mini_imagenet(tmp_path, allow_nonstandard=True)


def test_tiered_corrupt_png_and_truncated_npz(tmp_path):
    truth = make_truth()
    write_tiered_l2l(tmp_path / "l2l", truth)
    path = tmp_path / "l2l" / "tiered-imagenet" / "val_images_png.pkl"
    items = load_pickle(path)
    items[1] = items[1][:20] + bytes(len(items[1]) - 20)  # PNG header, then zeros
    _dump(items, path)
    with pytest.raises(DatasetError, match=r"cannot decode image .*val_images_png\.pkl item 1"):
        tiered_imagenet.load_tiered_imagenet(tmp_path / "l2l", allow_nonstandard=True)
    write_tiered_mon(tmp_path / "mon", truth)
    npz = tmp_path / "mon" / "test_images.npz"
    npz.write_bytes(npz.read_bytes()[:-200])
    with pytest.raises(DatasetError, match=r"test_images\.npz is truncated or corrupt"):
        tiered_imagenet.load_tiered_imagenet(tmp_path / "mon", allow_nonstandard=True)


def test_tiered_labels_must_match_the_images(tmp_path):
    write_tiered_l2l(tmp_path, make_truth())
    labels = tmp_path / "tiered-imagenet" / "train_labels.pkl"
    data = load_pickle(labels)
    data["label_specific"] = data["label_specific"][:-1]
    _dump(data, labels)
    with pytest.raises(DatasetError, match=r"train_images_png\.pkl with train_labels\.pkl\): "
                                           r"12 images but 11 labels"):
        tiered_imagenet.load_tiered_imagenet(tmp_path, allow_nonstandard=True)


def test_cifar_folder_with_a_missing_class_names_it(tmp_path):
    write_cifar_folders(tmp_path, make_cifar_truth(per_class=1))
    for png in (tmp_path / "cifar100" / "data" / "whale").iterdir():
        png.unlink()
    with pytest.raises(DatasetError, match="lists class 'whale'"):
        cifar.load_cifar_fs(tmp_path)


def test_raw_cifar_with_wrong_class_names_is_refused(tmp_path):
    write_cifar_raw(tmp_path, make_cifar_truth(per_class=2))
    meta = tmp_path / "cifar-100-python" / "meta"
    data = load_pickle(meta)
    data["fine_label_names"][0] = "pineapple"
    _dump(data, meta)
    with pytest.raises(DatasetError, match="fine_label_names differ"):
        cifar.load_fc100(tmp_path)


# --------------------------------------------------------------------------- pickle streaming

@pytest.mark.parametrize("protocol", range(6))
@pytest.mark.parametrize("kind", ["bytes", "array"])
def test_streaming_a_pickled_list_yields_every_item_in_order(tmp_path, protocol, kind):
    rng = np.random.default_rng(protocol)
    payloads = [rng.integers(0, 256, 300 + i, dtype=np.uint8) for i in range(40)]
    items = [p.tobytes() for p in payloads] if kind == "bytes" else payloads
    path = _dump(items, tmp_path / "list.pkl", protocol=protocol)
    seen = []
    count = stream_pickled_list(path, lambda i, item: seen.append(
        (i, item.tobytes() if isinstance(item, np.ndarray) else bytes(item))))
    assert count == 40 and seen == [(i, p.tobytes()) for i, p in enumerate(payloads)]
    first = first_pickled_item(path)
    assert (first.tobytes() if kind == "array" else first) == payloads[0].tobytes()


def test_streaming_refuses_a_dict(tmp_path):
    path = _dump({"a": 1}, tmp_path / "d.pkl")
    with pytest.raises(DatasetError, match="holds a dict, not a list"):
        stream_pickled_list(path, lambda i, item: None)


def test_zip_member_reader_sees_only_the_named_array(tmp_path):
    np.savez(tmp_path / "x.npz", other=np.zeros(3))
    with pytest.raises(DatasetError, match="has no array 'images' \\(its arrays: other\\)"):
        list(iter_npz_rows(tmp_path / "x.npz", "images"))
    with zipfile.ZipFile(tmp_path / "x.npz") as z:
        assert z.namelist() == ["other.npy"]
