"""hytnas.mo: true-front hypervolume, reference point and anytime curves against brute-force 2-D sweeps."""
from __future__ import annotations

import math

import pytest
import torch

from hytnas.errors import SearchError
from hytnas.mo import evals_to_reach, hv_at, hv_curve, hypervolume, pareto_mask, true_front
from hytnas.objectives import get_objectives, to_maximize

PAIRS = [("val_accuracy", "latency_ms"), ("val_accuracy", "params_k"), ("latency_ms", "params_k"),
         ("val_accuracy", "test_accuracy")]


def brute_force_hv_2d(Y: torch.Tensor, senses: tuple[str, str], ref: tuple[float, float]) -> float:
    """Area dominated by the rows of ``Y`` (own senses) over ``ref`` (maximised space), by a sweep
    over the points sorted by the first objective (no library code)."""
    pts = [(float(a) * (1 if senses[0] == "max" else -1), float(b) * (1 if senses[1] == "max" else -1))
           for a, b in Y.tolist()]
    pts = [p for p in pts if p[0] > ref[0] and p[1] > ref[1]]
    pts.sort(key=lambda p: -p[0])
    area, best_b = 0.0, ref[1]
    for a, b in pts:
        if b > best_b:
            area += (a - ref[0]) * (b - best_b)
            best_b = b
    return area


def brute_force_front(Y: torch.Tensor, senses: tuple[str, ...]) -> set[int]:
    s = torch.tensor([1.0 if x == "max" else -1.0 for x in senses], dtype=torch.float64)
    M = Y * s
    out = set()
    for i in range(len(M)):
        dominated = any(bool((M[j] >= M[i]).all() and (M[j] > M[i]).any()) for j in range(len(M)))
        if not dominated:
            out.add(i)
    return out


def random_table(n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    acc = 0.6 + 0.3 * torch.rand(n, generator=g, dtype=torch.float64)
    lat = 1.0 + 20.0 * torch.rand(n, generator=g, dtype=torch.float64)
    return torch.stack([acc, lat], dim=1)


@pytest.mark.parametrize("pair", PAIRS)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_true_front_matches_brute_force(pair, seed):
    objs = get_objectives(pair)
    Y = random_table(40, seed)
    tf = true_front(Y, objs)
    senses = tuple(o.sense for o in objs)
    assert set(tf.pareto_rows) == brute_force_front(Y, senses)
    ref = tuple(tf.ref_point.tolist())
    assert tf.hypervolume == pytest.approx(brute_force_hv_2d(Y, senses, ref), rel=1e-12)
    assert tf.hypervolume > 0


def test_reference_point_is_the_table_worst_minus_ten_percent_of_its_range():
    objs = get_objectives(["val_accuracy", "latency_ms"])
    Y = torch.tensor([[0.9, 10.0], [0.8, 5.0], [0.7, 2.0], [0.6, 30.0]], dtype=torch.float64)
    tf = true_front(Y, objs)
    assert tf.pareto_rows == (0, 1, 2)
    # maximised space over ALL rows: acc in [0.6, 0.9], -lat in [-30, -2]
    assert tf.ref_point.tolist() == pytest.approx([0.6 - 0.1 * 0.3, -30.0 - 0.1 * 28.0])
    assert tf.ref_point_natural() == pytest.approx([0.57, 32.8])
    # every row strictly dominates the reference point: any evaluation adds volume
    assert bool((to_maximize(Y, objs) > tf.ref_point).all())
    assert tf.hypervolume == pytest.approx(brute_force_hv_2d(Y, ("max", "min"), tuple(tf.ref_point.tolist())))


def test_hv_curve_is_the_prefix_hypervolume():
    objs = get_objectives(["val_accuracy", "latency_ms"])
    Y = random_table(30, 7)
    tf = true_front(Y, objs)
    curve = hv_curve(Y, objs, tf.ref_point)
    assert len(curve) == 30
    for i in (0, 4, 11, 29):
        assert curve[i] == pytest.approx(hypervolume(Y[: i + 1], objs, tf.ref_point), rel=1e-12)
    assert all(b >= a for a, b in zip(curve, curve[1:]))
    assert curve[-1] == pytest.approx(tf.hypervolume, rel=1e-12)


def test_points_not_dominating_the_reference_add_nothing():
    objs = get_objectives(["val_accuracy", "latency_ms"])
    ref = torch.tensor([0.5, -10.0], dtype=torch.float64)
    Y = torch.tensor([[0.4, 1.0], [0.9, 20.0], [0.6, 5.0]], dtype=torch.float64)
    assert hv_curve(Y, objs, ref) == pytest.approx([0.0, 0.0, 0.1 * 5.0])


def test_evals_to_reach_and_hv_at():
    curve = [0.0, 0.5, 0.5, 0.96, 1.0]
    assert evals_to_reach(curve, 0.95) == 4
    assert evals_to_reach(curve, 1.0) == 5
    assert evals_to_reach(curve, 1.1) is None
    assert hv_at(curve, 2) == 0.5
    assert math.isnan(hv_at(curve, 6))


def test_pareto_mask_and_bad_input():
    objs = get_objectives(["val_accuracy", "params_k"])
    Y = torch.tensor([[0.9, 100.0], [0.8, 200.0], [0.7, 50.0]], dtype=torch.float64)
    assert pareto_mask(Y, objs).tolist() == [True, False, True]
    with pytest.raises(SearchError, match="NaN"):
        true_front(torch.tensor([[0.9, math.nan]], dtype=torch.float64), objs)
    with pytest.raises(SearchError, match="shape"):
        true_front(torch.zeros(3, 3, dtype=torch.float64), objs)
