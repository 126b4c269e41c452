"""The Omniglot reader: the shared small archives, folders, torchvision's layout, and errors."""
from __future__ import annotations

import re
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from datasets import DATASETS, DatasetError, FewShotDataset, load_dataset
from datasets.omniglot import _load_cached, find_sources, load_omniglot, split_sizes

SMALL_ARCHIVES = ("images_background_small1.zip", "images_background_small2.zip")


def _same(a: FewShotDataset, b: FewShotDataset) -> bool:
    return all(
        torch.equal(x.images, y.images) and torch.equal(x.labels, y.labels)
        and x.class_names == y.class_names
        for x, y in zip((a.train, a.val, a.test), (b.train, b.val, b.test))
    ) and (a.mean, a.std) == (b.mean, b.std)


def _fresh_load(root: Path) -> FewShotDataset:
    """Load bypassing the in-process cache."""
    sources = tuple(find_sources(root))
    return _load_cached.__wrapped__(sources, ())


@pytest.fixture(scope="module")
def omniglot(omniglot_root: Path) -> FewShotDataset:
    return load_omniglot(omniglot_root)


# ----------------------------------------------------------------- the shared small archives
def test_small_archives_give_242_deduplicated_characters(omniglot: FewShotDataset) -> None:
    splits = (omniglot.train, omniglot.val, omniglot.test)
    names = [n for s in splits for n in s.class_names]
    assert len(names) == len(set(names)) == 242
    assert len({n.split("/")[0] for n in names}) == 8
    assert all(n.split("/")[1].startswith("character") for n in names)
    assert all(s.class_sizes() == [20] * s.n_classes for s in splits)
    assert "images_background_small1.zip" in omniglot.source
    assert "images_background_small2.zip" in omniglot.source
    assert "242" in omniglot.source


def test_split_sizes_are_proportional_and_disjoint(omniglot: FewShotDataset) -> None:
    sizes = (omniglot.train.n_classes, omniglot.val.n_classes, omniglot.test.n_classes)
    assert sizes == (164, 15, 63) == split_sizes(242)
    assert "164/15/63" in omniglot.source and "1100/100/423" in omniglot.source
    train, val, test = (set(s.class_names) for s in (omniglot.train, omniglot.val, omniglot.test))
    assert not (train & val or train & test or val & test)


def test_images_are_28px_uint8_with_bright_ink(omniglot: FewShotDataset) -> None:
    images = omniglot.train.images
    assert images.dtype == torch.uint8 and tuple(images.shape[1:]) == (1, 28, 28)
    assert omniglot.image_size == 28 and omniglot.channels == 1
    # Background (white paper in the PNGs) becomes 0; strokes are bright.
    border = torch.cat([images[..., 0, :], images[..., -1, :]], dim=-1)
    assert (border == 0).float().mean() > 0.95
    assert (images.amax(dim=(1, 2, 3)) > 200).all()
    assert 0.02 < omniglot.mean[0] < 0.25 and 0.1 < omniglot.std[0] < 0.4


def test_preprocessing_matches_lanczos_then_invert(omniglot_root: Path,
                                                   omniglot: FewShotDataset) -> None:
    """One image recomputed by hand: convert('L'), LANCZOS to 28 px, 255 - x."""
    cname = omniglot.train.class_names[0]
    with zipfile.ZipFile(omniglot_root / SMALL_ARCHIVES[0]) as z1, \
            zipfile.ZipFile(omniglot_root / SMALL_ARCHIVES[1]) as z2:
        members = sorted(m for z in (z1, z2) for m in z.namelist()
                         if f"/{cname}/" in m and m.endswith(".png"))
        archive = z1 if members[0] in z1.namelist() else z2
        with archive.open(members[0]) as fh:
            img = Image.open(fh).convert("L").resize((28, 28), Image.Resampling.LANCZOS)
    expected = 255 - np.asarray(img)
    assert np.array_equal(omniglot.train.images[0, 0].numpy(), expected)


def test_loading_is_deterministic_and_cached(omniglot_root: Path,
                                             omniglot: FewShotDataset) -> None:
    assert _same(_fresh_load(omniglot_root), omniglot)
    assert load_omniglot(omniglot_root) is omniglot
    assert load_dataset("omniglot", omniglot_root) is omniglot


def test_extracted_folders_load_like_the_zips(omniglot_root: Path, omniglot: FewShotDataset,
                                              tmp_path: Path) -> None:
    for name in SMALL_ARCHIVES:
        with zipfile.ZipFile(omniglot_root / name) as archive:
            archive.extractall(tmp_path)
    assert {s.kind for s in find_sources(tmp_path)} == {"folder"}
    from_folders = load_omniglot(tmp_path)
    assert _same(from_folders, omniglot)
    assert str(tmp_path) in from_folders.source


def test_torchvision_layout_with_one_archive(omniglot_root: Path, tmp_path: Path) -> None:
    (tmp_path / "omniglot-py").mkdir()
    shutil.copy(omniglot_root / SMALL_ARCHIVES[0], tmp_path / "omniglot-py")
    ds = load_omniglot(tmp_path)
    n = ds.train.n_classes + ds.val.n_classes + ds.test.n_classes
    assert n == 136  # Balinese, Early_Aramaic, Greek, Korean, Latin
    assert (ds.train.n_classes, ds.val.n_classes, ds.test.n_classes) == split_sizes(136)


def test_truncated_zip_names_the_file(omniglot_root: Path, tmp_path: Path) -> None:
    broken = tmp_path / SMALL_ARCHIVES[0]
    broken.write_bytes((omniglot_root / SMALL_ARCHIVES[0]).read_bytes()[:4096])
    with pytest.raises(DatasetError, match="images_background_small1.zip") as err:
        load_omniglot(tmp_path)
    assert str(broken) in str(err.value)


# ------------------------------------------------------------------ synthetic, always run
def _write_png(path: Path, ink_box: tuple[int, int, int, int]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.new("1", (105, 105), 1)  # white paper, one-bit like Omniglot
    img.paste(0, ink_box)
    img.save(path)


def _synthetic(root: Path, n_chars: int = 16, drawers: int = 3) -> Path:
    top = root / "images_background"
    for c in range(n_chars):
        for d in range(1, drawers + 1):
            alphabet = "Alpha" if c < 8 else "Beta"
            path = top / alphabet / f"character{c % 8 + 1:02d}" / f"{c + 1:04d}_{d:02d}.png"
            _write_png(path, (10 + 4 * c, 10 + 3 * d, 30 + 4 * c, 60 + 3 * d))
    return top


def test_synthetic_folder_loads_with_proportional_split(tmp_path: Path) -> None:
    _synthetic(tmp_path)
    ds = load_omniglot(tmp_path)
    assert (ds.train.n_classes, ds.val.n_classes, ds.test.n_classes) == (6, 5, 5)
    assert all(s.class_sizes() == [3] * s.n_classes for s in (ds.train, ds.val, ds.test))
    assert ds.train.images[:, :, 0, 0].eq(0).all()  # white paper -> 0 after inversion
    assert ds.train.images.amax() == 255  # solid black ink -> 255


def test_split_sizes() -> None:
    assert split_sizes(1623) == (1100, 100, 423)
    assert split_sizes(242) == (164, 15, 63)
    assert split_sizes(20) == (10, 5, 5)
    with pytest.raises(DatasetError, match="at least 15"):
        split_sizes(14)


def test_missing_root_says_where_and_how(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(DatasetError) as err:
        load_omniglot(missing)
    message = str(err.value)
    assert str(missing) in message and "omniglot-py" in message
    assert "images_background.zip" in message and "images_background_small2.zip" in message
    assert "download=True" in message and "--download" in message
    assert "shared" not in message  # a user's clone has no folder beside it


def test_default_root_comes_from_the_environment(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BRIDGEBENCH_DATA", str(tmp_path))
    with pytest.raises(DatasetError, match=re.escape(str(tmp_path / "omniglot"))):
        load_dataset("omniglot")


def test_unreadable_png_names_the_file(tmp_path: Path) -> None:
    top = _synthetic(tmp_path)
    bad = top / "Beta" / "character08" / "0016_02.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    with pytest.raises(DatasetError, match="0016_02.png"):
        load_omniglot(tmp_path)


def test_inconsistent_character_ids_are_reported(tmp_path: Path) -> None:
    top = _synthetic(tmp_path)
    _write_png(top / "Alpha" / "character01" / "0002_01.png", (5, 5, 20, 20))
    with pytest.raises(DatasetError, match="Alpha/character01.*character ids 1 and 2"):
        load_omniglot(tmp_path)


def test_registry_entry() -> None:
    info = DATASETS.get("omniglot")
    assert info.needs_files is True and info.image_size == 28


# ------------------------------------------------------------------ classes never dropped
def test_an_empty_character_folder_is_an_error_naming_it(tmp_path: Path) -> None:
    """Issue 24: an empty character folder silently dropped a class and changed the split."""
    top = _synthetic(tmp_path)
    empty = top / "Beta" / "character09"
    empty.mkdir()
    with pytest.raises(DatasetError, match=rf"class folder {re.escape(str(empty))} holds no "
                                           r"images.*--allow-nonstandard"):
        load_omniglot(tmp_path)
    with pytest.raises(DatasetError, match="character09 holds no images"):
        load_dataset("omniglot", tmp_path)  # what bench run reads through
    with pytest.warns(UserWarning, match="16 classes remain"):
        ds = load_dataset("omniglot", tmp_path, allow_nonstandard=True)
    assert ds.train.n_classes + ds.val.n_classes + ds.test.n_classes == 16


def test_a_character_with_fewer_images_is_an_error_naming_it(tmp_path: Path) -> None:
    top = _synthetic(tmp_path)
    short = top / "Alpha" / "character03"
    next(iter(sorted(short.glob("*.png")))).unlink()
    with pytest.raises(DatasetError, match=rf"{re.escape(str(short))} holds 2 images, fewer "
                                           r"than the 3 of the others"):
        load_omniglot(tmp_path)
    with pytest.warns(UserWarning, match="15 classes remain"):
        ds = load_omniglot(tmp_path, allow_nonstandard=True)
    assert all(s.class_sizes() == [3] * s.n_classes for s in (ds.train, ds.val, ds.test))
