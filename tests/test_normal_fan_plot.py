"""The normal-fan picture of the tropical chapter: solid cones, walls, and labels in their own cones."""

import itertools

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from moe_theory.tropical import plot_normal_fan4, sum_zero_basis, topk_mask  # noqa: E402


@pytest.mark.parametrize("k", [1, 2, 3])
def test_the_direction_of_vertex_1S_lies_inside_its_own_normal_cone(k):
    """Where the figure writes the label S: the direction of 1_S (centred, in 1^perp) routes to S
    with a positive gap, so every label sits inside the cone it names."""
    B = sum_zero_basis(4)
    for S in itertools.combinations(range(4), k):
        v = B @ (np.isin(np.arange(4), S) - k / 4)
        g = v @ B  # the logits of that direction
        assert tuple(np.flatnonzero(topk_mask(g, k))) == S
        top = np.sort(g)[::-1]
        assert top[k - 1] - top[k] > 0.1


def test_plot_normal_fan4_draws_one_colour_per_cone_and_the_walls():
    fig = plt.figure()
    ax = fig.add_subplot(projection="3d")
    plot_normal_fan4(ax, 2, n_points=30)
    faces = ax.collections[0].get_facecolors()[:, :3]
    assert len(np.unique(np.round(faces, 6), axis=0)) == 6  # six cones for k = 2
    assert len(ax.lines) == 6 and len(ax.texts) >= 3  # one wall circle per pair, front labels
    plt.close(fig)
    with pytest.raises(ValueError, match="n_points must be >= 1"):
        plot_normal_fan4(plt.figure().add_subplot(projection="3d"), 2, n_points=0)
    with pytest.raises(ValueError, match="k must satisfy 1 <= k <= n_experts"):
        plot_normal_fan4(plt.figure().add_subplot(projection="3d"), 5)
    plt.close("all")
