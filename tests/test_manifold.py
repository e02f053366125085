"""The manifold chapter: samplers, atlases, the constructive MoE (Experiment I: test_experiments_manifold.py)."""

import json
import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from moe_theory.manifold import (argmax_routing_is_exact, build_chart_moe, chart_moe_sup_error, chart_moe_to_layer,
                                 check_isometry, circle_atlas, circle_embedding, circle_grid, circle_target, embed,
                                 equal_parameter_width, partition_of_unity, random_isometry, sample_circle,
                                 sample_sphere, sample_torus, voronoi_gate, count_parameters)


# ----------------------------------------------------------------------------- embeddings and samplers
@pytest.mark.parametrize("D,d", [(2, 2), (16, 2), (128, 3)])
def test_random_isometry_is_orthonormal_and_preserves_distances(D, d):
    Q = random_isometry(D, d, seed=3)
    assert np.allclose(Q.T @ Q, np.eye(d), atol=1e-12)
    z = np.random.default_rng(0).standard_normal((20, d))
    x = embed(z, Q)
    dz = np.linalg.norm(z[:, None] - z[None], axis=-1)
    dx = np.linalg.norm(x[:, None] - x[None], axis=-1)
    assert np.allclose(dx, dz, atol=1e-12)
    assert np.array_equal(Q, random_isometry(D, d, seed=3))  # seeded


def test_samplers_lie_on_their_manifolds_and_are_seeded():
    Q = circle_embedding(32, "random", seed=1)
    x, theta = sample_circle(500, Q, seed=2)
    assert np.allclose(np.linalg.norm(x, axis=1), 1, atol=1e-12)
    assert np.allclose(x @ Q, np.stack([np.cos(theta), np.sin(theta)], 1), atol=1e-12)
    assert np.array_equal(x, sample_circle(500, Q, seed=2)[0])
    xa, _ = sample_circle(10, circle_embedding(16), seed=0)
    assert np.all(xa[:, 2:] == 0)  # axis-aligned: only the first two coordinates
    s = sample_sphere(300, 2, 10, embedding="random", seed=4)
    assert s.shape == (300, 10) and np.allclose(np.linalg.norm(s, axis=1), 1)
    t = sample_torus(300, 6, seed=5)
    assert np.allclose(t[:, 0] ** 2 + t[:, 1] ** 2, 0.5) and np.allclose(t[:, 2] ** 2 + t[:, 3] ** 2, 0.5)
    # intrinsic dimension: local PCA of a small neighbourhood of a circle point has one big direction
    xs, _ = sample_circle(4000, Q, seed=6)
    near = xs[np.linalg.norm(xs - xs[0], axis=1) < 0.05]
    ev = np.linalg.eigvalsh(np.cov((near - near.mean(0)).T))[::-1]
    assert ev[1] < 1e-3 * ev[0]


def test_tangent_charts_are_strictly_monotone_along_their_arcs():
    atlas = circle_atlas(5, circle_embedding(20, "random", seed=0))
    for i, th in enumerate(atlas.theta):
        s = np.linspace(th - atlas.alpha, th + atlas.alpha, 501)
        t = atlas.charts(embed(np.stack([np.cos(s), np.sin(s)], 1), atlas.Q))[:, i]
        assert np.all(np.diff(t) > 0)
        assert np.allclose(t, np.sin(s - th), atol=1e-12)


def test_manifold_functions_reject_bad_input():
    with pytest.raises(ValueError, match="manifold dimension must not exceed the ambient dimension"):
        random_isometry(2, 3, seed=0)
    with pytest.raises(ValueError, match="manifold dimension d=3 needs an ambient dimension D >= d"):
        sample_sphere(10, 3, 3, seed=0)
    with pytest.raises(ValueError, match="D >= 4"):
        sample_torus(10, 3, seed=0)
    with pytest.raises(ValueError, match="D must be >= 2"):
        circle_embedding(1)
    with pytest.raises(ValueError, match="embedding must be one of"):
        circle_embedding(4, "curved")
    with pytest.raises(ValueError, match=r"Q must have orthonormal columns \(Q\^T Q = I\)"):
        embed(np.ones((2, 2)), 2 * np.eye(4)[:, :2])
    with pytest.raises(ValueError, match="Q must have at most as many columns as rows"):
        check_isometry(np.ones((2, 3)))
    with pytest.raises(ValueError, match="n must be >= 1"):
        sample_circle(0, np.eye(3)[:, :2], seed=0)
    with pytest.raises(TypeError, match="seed must be a non-negative int seed"):
        sample_circle(3, np.eye(3)[:, :2], seed=None)
    with pytest.raises(ValueError, match=r"z must have shape \(\.\.\., 2\)"):
        embed(np.ones((3, 3)), np.eye(4)[:, :2])
    with pytest.raises(ValueError, match="theta must contain only finite values"):
        circle_target(np.array([np.nan]))
    with pytest.raises(ValueError, match="radius must be > 0.0"):
        partition_of_unity(np.ones((2, 2)), np.ones((3, 2)), 0.0)
    with pytest.raises(ValueError, match="radius=0.1 is too small"):
        partition_of_unity(np.array([[5.0, 0.0]]), np.ones((3, 2)), 0.1)
    with pytest.raises(ValueError, match=r"delta must have shape \(\.\.\., 3\)"):
        argmax_routing_is_exact(np.ones(3) / 3, np.zeros(4))
    with pytest.raises(ValueError, match="charts must be arcs shorter than pi"):
        circle_atlas(2, np.eye(2))
    with pytest.raises(ValueError, match="overlap must be > 1.0"):
        circle_atlas(4, np.eye(2), overlap=1.0)
    with pytest.raises(ValueError, match=r"x must have shape \(\.\.\., 3\)"):
        voronoi_gate(np.ones((2, 2)), np.ones((4, 3)))


# ----------------------------------------------------------------------------- gates and partitions of unity
def test_lem_mfd_voronoi_gate_is_nearest_centre():
    rng = np.random.default_rng(0)
    for D in (2, 5, 30):
        c, x = rng.standard_normal((7, D)) * rng.uniform(0.2, 3, (7, 1)), rng.standard_normal((2000, D))
        nearest = np.argmin(np.linalg.norm(x[:, None] - c[None], axis=-1), axis=1)
        assert np.array_equal(np.argmax(voronoi_gate(x, c), axis=1), nearest)
        # without the bias the rule differs once the |c_i| differ
        assert not np.array_equal(np.argmax(voronoi_gate(x, c, bias=False), axis=1), nearest)


def test_prop_mfd_bias_free_on_centred_sphere():
    Q = circle_embedding(16, "random", seed=2)
    atlas = circle_atlas(6, Q)
    x, _ = sample_circle(3000, Q, seed=3)
    c = 2.5 * atlas.centres  # any common radius
    assert np.array_equal(np.argmax(voronoi_gate(x, c), 1), np.argmax(voronoi_gate(x, c, bias=False), 1))
    s = sample_sphere(2000, 3, 8, embedding="random", seed=1)
    cs = sample_sphere(9, 3, 8, embedding="random", seed=1)
    assert np.array_equal(np.argmax(voronoi_gate(s, cs), 1), np.argmax(voronoi_gate(s, cs, bias=False), 1))
    # each expert of the bias-free gate owns one arc of length 2 pi / N around its centre
    xg, theta = circle_grid(600, Q)
    j = np.argmax(voronoi_gate(xg, atlas.centres, bias=False), 1)
    gap = np.angle(np.exp(1j * (theta - atlas.theta[j])))
    assert np.all(np.abs(gap) <= np.pi / 6 + 1e-12)


@pytest.mark.parametrize("N", [3, 4, 7])
def test_prop_mfd_partition_of_unity(N):
    Q = circle_embedding(12, "random", seed=N)
    atlas = circle_atlas(N, Q)
    x, theta = sample_circle(5000, Q, seed=N)
    rho = atlas.partition_of_unity(x)
    assert np.all(rho >= 0) and np.abs(rho.sum(1) - 1).max() < 1e-12
    assert np.all(rho.max(1) >= 1 / N)
    dist = np.linalg.norm(x[:, None] - atlas.centres[None], axis=-1)
    assert np.all(rho[dist >= atlas.radius] == 0)  # supp rho_i inside the chart ball U_i
    # on the sphere and torus too
    for pts, cs in ((sample_sphere(3000, 2, 5, seed=1), sample_sphere(60, 2, 5, seed=2)),
                    (sample_torus(3000, 4, seed=1), sample_torus(200, 4, seed=2))):
        r = partition_of_unity(pts, cs, 0.9)
        assert np.abs(r.sum(1) - 1).max() < 1e-12


@given(st.integers(2, 8), st.integers(0, 10_000), st.floats(0.0, 0.999))
def test_lem_mfd_exact_routing(N, seed, frac):
    rng = np.random.default_rng(seed)
    rho = rng.dirichlet(np.full(N, 0.3))
    rho[rng.random(N) < 0.4] = 0.0  # many zeros: points outside several supports
    if rho.sum() == 0:
        rho[0] = 1.0
    rho /= rho.sum()
    delta = rng.uniform(-1, 1, N)
    delta *= frac / (2 * N) / np.abs(delta).max()  # ||delta||_inf < 1 / (2N)
    assert argmax_routing_is_exact(rho, delta)


def test_lem_mfd_exact_routing_bound_is_sufficient_not_sharp():
    N = 4
    rho = np.array([0.0] + [1 / (N - 1)] * (N - 1))
    for a in (0.9 / (2 * N), 1.1 / (2 * N), 0.99 / (2 * (N - 1))):  # beyond 1/(2N) it can still hold
        assert argmax_routing_is_exact(rho, np.array([a, -a, -a, -a]))
    a = 1.01 / (2 * (N - 1))  # and fails just past 1/(2(N-1))
    assert not argmax_routing_is_exact(rho, np.array([a, -a, -a, -a]))


# ----------------------------------------------------------------------------- the constructive MoE
def test_thm_mfd_moe_rate_constructive_moe_slope_is_minus_two():
    Q = circle_embedding(16, "random", seed=0)
    ms = np.array([9, 17, 33, 65, 129])
    err = np.array([chart_moe_sup_error(build_chart_moe(4, m, Q), n_test=8000) for m in ms])
    slope = np.polyfit(np.log(ms - 1), np.log(err), 1)[0]
    assert -2.2 <= slope <= -1.8
    assert np.all(np.diff(err) < 0)
    # error bound of linear interpolation: h^2 max|g''| / 8 with |g''| <= 25 + 9 + 25 + 9 (crude)
    h = 2 * math.sin(math.pi / 4) / (ms - 1)
    assert np.all(err <= h**2 * 68 / 8)


def test_cor_mfd_affine_charts_error_independent_of_D():
    errs = [chart_moe_sup_error(build_chart_moe(5, 40, circle_embedding(D, emb, seed=D)))
            for D in (3, 16, 128) for emb in ("axis", "random")]
    assert np.ptp(errs) <= 1e-12 * max(errs)


def test_prop_mfd_spline_expert_is_an_exact_two_layer_relu_moe():
    Q = circle_embedding(24, "random", seed=5)
    moe = build_chart_moe(4, 21, Q)
    x, theta = circle_grid(4000, Q)
    # independent reference: np.interp of the same knots in each chart
    j = moe.route(x)
    t = np.einsum("nd,nd->n", x, moe.atlas.tangents[j])
    vals = circle_target(moe.atlas.theta[:, None] + np.arcsin(moe.knots)[None])
    ref = np.array([np.interp(t[n], moe.knots, vals[j[n]]) for n in range(len(t))])
    assert np.abs(moe(x) - ref).max() < 1e-12
    layer = chart_moe_to_layer(moe, device="cpu")
    with torch.no_grad():
        y, routing = layer(torch.as_tensor(x), return_routing=True)
    assert np.abs(y[:, 0].numpy() - moe(x)).max() < 1e-12
    assert np.array_equal(routing.indices[:, 0].numpy(), j)
    assert torch.equal(routing.weights, torch.ones_like(routing.weights))  # top-1 weight exactly 1
    assert layer.router.bias is None  # the bias-free gate g(x) = C x, as in the construction
    with pytest.raises(ValueError, match="n_experts must be >= 3"):
        build_chart_moe(2, 10, Q)
    with pytest.raises(ValueError, match="m must be >= 2"):
        build_chart_moe(4, 1, Q)
    with pytest.raises(ValueError, match=r"Q must embed the circle: shape \(D, 2\)"):
        build_chart_moe(4, 10, np.eye(5)[:, :3])
    with pytest.raises(TypeError, match="moe must be a ChartMoE"):
        chart_moe_sup_error(3)
    with pytest.raises(TypeError, match="moe must be a ChartMoE"):
        chart_moe_to_layer(None)
