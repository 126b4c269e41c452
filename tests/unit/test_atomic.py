"""core.atomic: the one atomic write (all-or-nothing, one permission rule, no leftovers) and
the exclusive create that claims use."""
import os
import stat

import pytest
import torch

from core.atomic import (create_new, file_mode, save_torch_atomic, write_bytes_atomic,
                         write_json_atomic, write_text_atomic)


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_a_write_replaces_the_whole_file_and_leaves_only_it(tmp_path):
    target = tmp_path / "sub" / "a.csv"
    write_text_atomic(target, "x\n1\n")
    write_text_atomic(target, "x\n2\n")
    assert target.read_text() == "x\n2\n"
    assert [p.name for p in target.parent.iterdir()] == ["a.csv"]


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_every_front_end_gives_an_ordinary_files_permissions(tmp_path, umask):
    previous = os.umask(umask)
    try:
        assert file_mode() == 0o666 & ~umask
        write_text_atomic(tmp_path / "t.txt", "text")
        write_bytes_atomic(tmp_path / "b.bin", b"\x00\x01")
        write_json_atomic(tmp_path / "j.json", {"a": float("nan")})
        save_torch_atomic(tmp_path / "w.pt", {"w": torch.ones(2)})
        assert create_new(tmp_path / "c.claim", "me")
        for name in ("t.txt", "b.bin", "j.json", "w.pt", "c.claim"):
            assert mode(tmp_path / name) == 0o666 & ~umask, name
    finally:
        os.umask(previous)
    assert (tmp_path / "j.json").read_text() == '{\n "a": NaN\n}\n'
    assert torch.equal(torch.load(tmp_path / "w.pt")["w"], torch.ones(2))


def test_a_failed_write_keeps_the_old_file_and_removes_the_temporary(tmp_path):
    target = tmp_path / "r.json"
    write_json_atomic(target, {"ok": 1})

    class Unserialisable:
        pass

    with pytest.raises(TypeError):
        write_json_atomic(target, {"ok": Unserialisable()})
    assert target.read_text() == '{\n "ok": 1\n}\n'
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]


def test_create_new_lets_exactly_one_writer_win(tmp_path):
    path = tmp_path / "key.claim"
    assert create_new(path, "first")
    assert not create_new(path, "second")
    assert path.read_text() == "first"
    assert [p.name for p in tmp_path.iterdir()] == ["key.claim"]
