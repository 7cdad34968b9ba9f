"""GraphBlockMask.save / load: round trip and every refusal."""
import hashlib
import os
import struct

import pytest
import torch

from conftest import random_graph
from graphattn import GraphBlockMask
from graphattn.mask import serialization

FIELDS = ("row_ptr", "col_idx", "tile_full", "bits", "col_ptr", "row_idx", "t_tile")


def assert_same(a, b):
    assert a.shape == b.shape and a.block_shape == b.block_shape and a.fingerprint == b.fingerprint
    for name in FIELDS:
        x, y = getattr(a, name), getattr(b, name)
        assert x.dtype == y.dtype and torch.equal(x, y), name


@pytest.fixture
def mask():
    return GraphBlockMask.from_edge_index(random_graph(300, 4000, seed=4), 300, block_size=(32, 64))


def resign(blob: bytes) -> bytes:
    """Recomputes the trailing checksum so that a deliberately altered file passes that check."""
    return blob[:-32] + hashlib.sha256(blob[:-32]).digest()


@pytest.mark.parametrize("n,e,block", [(0, 0, 16), (1, 1, 16), (100, 700, 32), (300, 4000, (32, 64)),
                                       (129, 3000, (16, 256))])
def test_round_trip(tmp_path, n, e, block):
    original = GraphBlockMask.from_edge_index(random_graph(n, e, seed=n), n, block_size=block)
    path = tmp_path / "m.gmask"
    original.save(path)
    assert_same(GraphBlockMask.load(path), original)
    assert_same(GraphBlockMask.load(str(path), num_nodes=n, device="cpu"), original)
    assert os.listdir(tmp_path) == ["m.gmask"]  # no temporary file left behind


def test_bipartite_round_trip_and_overwrite(tmp_path, mask):
    path = tmp_path / "m.gmask"
    mask.save(path)
    bip = GraphBlockMask.from_edge_index(torch.tensor([[0, 99, 5], [0, 3, 3]]), (4, 100), block_size=(16, 32))
    bip.save(path)  # replaces the previous file atomically
    assert_same(GraphBlockMask.load(path, num_nodes=(4, 100)), bip)


def test_wrong_node_count(tmp_path, mask):
    path = tmp_path / "m.gmask"
    mask.save(path)
    with pytest.raises(ValueError, match=r"built for a graph of shape.*\(300, 300\).*\(301, 301\)"):
        GraphBlockMask.load(path, num_nodes=301)
    loaded = GraphBlockMask.load(path)
    with pytest.raises(ValueError, match="built for a graph"):
        loaded.check_compatible(299)


@pytest.mark.parametrize("keep", [0, 10, 20, 100, -1, -33])
def test_truncated(tmp_path, mask, keep):
    path = tmp_path / "m.gmask"
    mask.save(path)
    blob = path.read_bytes()
    path.write_bytes(blob[:keep] if keep >= 0 else blob[:len(blob) + keep])
    with pytest.raises(ValueError, match="truncated|not a graphattn mask"):
        GraphBlockMask.load(path)


def test_altered_byte_fails_checksum(tmp_path, mask):
    path = tmp_path / "m.gmask"
    mask.save(path)
    blob = bytearray(path.read_bytes())
    blob[len(blob) // 2] ^= 0x10
    path.write_bytes(bytes(blob))
    with pytest.raises(ValueError, match="checksum"):
        GraphBlockMask.load(path)


def test_unknown_version_and_magic(tmp_path, mask):
    path = tmp_path / "m.gmask"
    mask.save(path)
    blob = path.read_bytes()
    magic, version, header_length = struct.unpack_from("<8sII", blob)
    path.write_bytes(resign(struct.pack("<8sII", magic, version + 1, header_length) + blob[16:]))
    with pytest.raises(ValueError, match=f"version {version + 1}"):
        GraphBlockMask.load(path)
    path.write_bytes(b"PK\x03\x04" + blob[4:])
    with pytest.raises(ValueError, match="not a graphattn mask"):
        GraphBlockMask.load(path)


def _rewrite(tmp_path, mask, **changes):
    """Saves ``mask`` with some fields replaced, bypassing nothing: a well-formed, re-signed file."""
    forged = GraphBlockMask(**{**mask.__dict__, **changes})
    path = tmp_path / "forged.gmask"
    serialization.save(forged, path)
    return path


def test_consistent_checksum_but_wrong_contents(tmp_path, mask):
    """A file with a valid checksum whose arrays disagree with each other is still refused."""
    bits = mask.bits.clone()
    bits[0, 0, 0] ^= 1 << 3
    cases = [
        (dict(bits=bits), "fingerprint"),
        (dict(fingerprint=mask.fingerprint ^ 1), "fingerprint"),
        (dict(col_idx=mask.col_idx.flip(0).contiguous()), "ascending"),
        (dict(row_ptr=mask.row_ptr - 1), "row_ptr"),
        (dict(tile_full=~mask.tile_full), "tile_full"),
        (dict(t_tile=mask.t_tile.roll(1)), "transpose"),
        (dict(shape=(300, 301)), "fingerprint"),
    ]
    for changes, match in cases:
        path = _rewrite(tmp_path, mask, **changes)
        with pytest.raises(ValueError, match=match):
            GraphBlockMask.load(path)


def test_bits_outside_graph_are_refused(tmp_path):
    m = GraphBlockMask.from_edge_index(torch.tensor([[0], [40]]), 41, block_size=32)  # tile (1, 0): 9 valid rows
    bits = m.bits.clone()
    bits[0, 20, 0] = 1  # row 32 + 20 = 52 does not exist
    path = _rewrite(tmp_path, m, bits=bits)
    with pytest.raises(ValueError, match="outside the graph"):
        GraphBlockMask.load(path)


def test_save_rejects_non_mask(tmp_path):
    with pytest.raises(TypeError, match="GraphBlockMask"):
        serialization.save("mask", tmp_path / "x")
