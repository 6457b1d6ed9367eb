"""Durable files, hashing and merging: the one implementation the device and the cloud share."""

from __future__ import annotations

import errno
import hashlib
import os
import stat

import pytest

from device.contracts import durable
from device.contracts.durable import atomic_symlink, atomic_write, fsync_tree
from device.contracts.hashing import BLOCK_BYTES, sha256_file, sha256_hex, sha256_pieces
from device.contracts.mappings import deep_merge
from device.store import files as store_files

ABC_SHA256 = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


# -- atomic writes ----------------------------------------------------------------------------


def test_an_atomic_write_leaves_the_complete_file_and_nothing_else(tmp_path):
    target = tmp_path / "state.json"
    assert atomic_write(target, b'{"a": 1}') == target
    assert target.read_bytes() == b'{"a": 1}'
    atomic_write(target, b'{"a": 2}')
    assert target.read_bytes() == b'{"a": 2}'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]


def test_a_failed_write_leaves_the_old_file_whole_and_no_partial_file(tmp_path, monkeypatch):
    target = tmp_path / "state.json"
    atomic_write(target, b"old and complete")
    real_write = os.write
    calls = []

    def disk_fills_up(fd: int, data) -> int:
        calls.append(len(data))
        if len(calls) > 1:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, bytes(data[:3]))  # a short write first, as a full disk does

    monkeypatch.setattr(durable.os, "write", disk_fills_up)
    with pytest.raises(OSError, match="No space left"):
        atomic_write(target, b"new but never finished")
    monkeypatch.undo()
    assert target.read_bytes() == b"old and complete"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]


def test_a_missing_directory_is_created_only_when_asked(tmp_path):
    nested = tmp_path / "ota" / "state.json"
    with pytest.raises(FileNotFoundError):
        atomic_write(nested, b"x")
    assert not nested.parent.exists()
    atomic_write(nested, b"x", make_parents=True)
    assert nested.read_bytes() == b"x"


def test_the_new_file_gets_the_mode_asked_for(tmp_path):
    old = os.umask(0o022)
    try:
        target = atomic_write(tmp_path / "frame.jpg", b"\xff\xd8", mode=0o640)
    finally:
        os.umask(old)
    assert stat.S_IMODE(target.stat().st_mode) == 0o640


def test_the_store_never_creates_the_data_dir_it_writes_into(tmp_path):
    gone = tmp_path / "unmounted-card" / "media"
    with pytest.raises(FileNotFoundError):
        store_files.atomic_write(gone, "a.jpg", b"\xff\xd8\xff\xd9")
    assert not (tmp_path / "unmounted-card").exists()
    written = store_files.atomic_write(tmp_path, "a.jpg", b"\xff\xd8\xff\xd9")
    assert written == tmp_path / "a.jpg" and written.read_bytes() == b"\xff\xd8\xff\xd9"


def test_a_symlink_is_repointed_in_one_step(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    link = tmp_path / "current"
    atomic_symlink(link, "a")
    atomic_symlink(link, "b")
    assert os.readlink(link) == "b"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b", "current"]


def test_a_tree_is_synced_bottom_up_without_touching_it(tmp_path):
    (tmp_path / "x" / "y").mkdir(parents=True)
    (tmp_path / "x" / "y" / "f").write_bytes(b"1")
    fsync_tree(tmp_path)
    assert (tmp_path / "x" / "y" / "f").read_bytes() == b"1"


# -- hashing ----------------------------------------------------------------------------------


def test_sha256_is_lowercase_hex_of_the_bytes():
    assert sha256_hex(b"abc") == ABC_SHA256
    assert sha256_pieces([b"a", b"", b"bc"]) == ABC_SHA256
    assert sha256_pieces([]) == hashlib.sha256(b"").hexdigest()


def test_a_file_is_hashed_in_blocks_to_the_same_digest(tmp_path):
    data = os.urandom(2 * BLOCK_BYTES + 123)  # more than one block, not a whole number of them
    path = tmp_path / "model.tflite"
    path.write_bytes(data)
    assert sha256_file(path) == sha256_hex(data) == hashlib.sha256(data).hexdigest()
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    assert sha256_file(empty) == sha256_hex(b"")


def test_the_store_hashes_with_the_shared_functions():
    assert store_files.sha256_hex is sha256_hex
    assert store_files.sha256_file is sha256_file


# -- merging ----------------------------------------------------------------------------------


def test_deep_merge_lays_one_document_over_another_without_changing_either():
    base = {"uplink": {"mqtt": {"host": "a", "port": 8883}, "transport": "mqtt"}, "x": [1]}
    extra = {"uplink": {"mqtt": {"host": "b"}}, "x": [2], "new": {"k": 1}}
    merged = deep_merge(base, extra)
    assert merged == {
        "uplink": {"mqtt": {"host": "b", "port": 8883}, "transport": "mqtt"},
        "x": [2],
        "new": {"k": 1},
    }
    assert base == {"uplink": {"mqtt": {"host": "a", "port": 8883}, "transport": "mqtt"}, "x": [1]}
    assert extra == {"uplink": {"mqtt": {"host": "b"}}, "x": [2], "new": {"k": 1}}
    merged["uplink"]["transport"] = "none"
    merged["new"]["k"] = 2
    assert base["uplink"]["transport"] == "mqtt" and extra["new"]["k"] == 1


def test_a_mapping_replaces_a_plain_value_and_a_plain_value_replaces_a_mapping():
    assert deep_merge({"a": 1}, {"a": {"b": 2}}) == {"a": {"b": 2}}
    assert deep_merge({"a": {"b": 2}}, {"a": 1}) == {"a": 1}
