"""Small faces: vargface.evaluate --shrink and vargface.distill --low-res take detail
away from the chosen crops only, and keep their size and range."""

import numpy as np
import torch

from vargface.distill import LOW_RES_SIDES, shrunk
from vargface.evaluate import shrunk_crops


def detail(x: np.ndarray) -> float:
    """Mean absolute difference between horizontal neighbours: fine texture."""
    return float(np.abs(np.diff(x.astype(np.float32), axis=-2)).mean())


def test_evaluate_shrink_keeps_shape_and_removes_detail():
    rng = np.random.default_rng(0)
    crops = rng.integers(0, 256, size=(3, 112, 112, 3), dtype=np.uint8)
    for side in (0, 112, 200):
        assert shrunk_crops(crops, side) is crops
    small = shrunk_crops(crops, 40)
    assert small.shape == crops.shape and small.dtype == np.uint8
    assert detail(small) < 0.5 * detail(crops)
    # Area-averaging keeps each face's mean brightness.
    assert np.allclose(small.mean(axis=(1, 2, 3)), crops.mean(axis=(1, 2, 3)), atol=2.0)


def test_distill_low_res_changes_only_the_chosen_faces():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(4, 3, 112, 112, generator=g) * 255
    chosen = torch.tensor([True, False, True, False])
    for where in (0.0, 1.0):
        out = shrunk(x, chosen, where)
        assert out.shape == x.shape
        assert torch.equal(out[~chosen], x[~chosen])
        assert detail(out[chosen].numpy()) < 0.6 * detail(x[chosen].numpy())
    assert shrunk(x, torch.zeros(4, dtype=torch.bool), 0.5) is x
    # The smallest side loses more than the largest.
    assert detail(shrunk(x, chosen, 0.0)[chosen].numpy()) < detail(shrunk(x, chosen, 1.0)[chosen].numpy())
    assert LOW_RES_SIDES[0] < LOW_RES_SIDES[1] < 112
