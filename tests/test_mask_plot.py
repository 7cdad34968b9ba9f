"""GraphBlockMask.plot writes a readable PNG in both the per-tile and the binned mode."""
import os

import pytest
import torch

from graphattn import masks

pytest.importorskip("matplotlib")


def read_png(path):
    import matplotlib.image
    return matplotlib.image.imread(path)


@pytest.mark.parametrize("resolution", [1024, 16])  # one cell per tile / binned pixels (40 blocks > 16)
def test_plot_writes_png(tmp_path, resolution):
    mask = masks.longformer(1300, 40, 3, block_size=32)
    path = tmp_path / "occupancy.png"
    mask.plot(path, resolution=resolution, title="longformer")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    image = read_png(path)
    assert image.shape[0] > 500 and image.shape[1] > 500
    assert image[..., :3].std() > 0.05   # not a blank canvas
    assert os.listdir(tmp_path) == ["occupancy.png"]


def test_plot_refusals(tmp_path):
    mask = masks.causal(40, block_size=16)
    with pytest.raises(ValueError, match="resolution"):
        mask.plot(tmp_path / "x.png", resolution=4)
    empty = masks.from_dense(torch.zeros(10, 10, dtype=torch.bool), block_size=16)
    empty.plot(tmp_path / "empty.png")   # an empty mask still plots
    assert (tmp_path / "empty.png").exists()
