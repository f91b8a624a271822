"""search_algos.common: problem validation, the final-result rule (``is_final``) and what an
observation holds (``observed``), the problem signature, known metrics, encoding cache."""
from __future__ import annotations

import math

import pytest
import torch

from hytnas.errors import SearchError
from hytnas.space import get_space
from search_algos.common import make_problem, nearest_unused

SPACE = get_space("hytnas-tiny")


def enc_sum(archs):
    return SPACE.encode(archs).sum(-1)


def test_known_and_reported_split():
    p = make_problem(SPACE, ["val_accuracy", "params_k"], ["peak_sram_kb <= 256", "val_loss <= 2"])
    assert [o.name for o in p.known_objectives] == ["params_k"]
    assert [o.name for o in p.reported_objectives] == ["val_accuracy"]
    assert [c.name for c in p.known_constraints] == ["peak_sram_kb"]
    assert [c.name for c in p.reported_constraints] == ["val_loss"]
    assert p.metric_names == ["val_accuracy", "params_k"] and p.modes == ["max", "min"]
    # an observation holds the reported objectives, then the reported constraint metrics
    assert p.observed_names == ["val_accuracy", "val_loss"]


def test_known_fn_makes_a_metric_known():
    p = make_problem(SPACE, ["val_accuracy", "latency_ms"], known_fns={"latency_ms": enc_sum})
    assert [o.name for o in p.known_objectives] == ["latency_ms"]
    assert p.observed_names == ["val_accuracy"]
    archs = SPACE.sample(5, seed=1)
    assert torch.allclose(p.known_values(archs)[:, 0], enc_sum(archs))


@pytest.mark.parametrize(
    "objectives, constraints, known_fns, match",
    [
        (["bogus_metric"], (), None, "bogus_metric: unknown metric"),
        (["val_accuracy:up"], (), None, "sense must be 'max' or 'min'"),
        ([{"name": "latency_ms", "source": "known"}], (), None, "declared known but nothing computes it"),
        (["val_accuracy"], ["params_k << 3"], None, "cannot parse"),
        (["val_accuracy", "val_accuracy"], (), None, "listed twice"),
        (["val_accuracy"], (), {"latency_ms": 3}, "known_fns.latency_ms: must be a callable"),
    ],
)
def test_bad_settings_are_one_line_search_errors(objectives, constraints, known_fns, match):
    with pytest.raises(SearchError, match=match) as info:
        make_problem(SPACE, objectives, constraints, known_fns=known_fns)
    assert "\n" not in str(info.value)


def test_bad_max_epochs_is_one_line():
    with pytest.raises(SearchError, match="max_epochs: must be >= 1, got 0") as info:
        make_problem(SPACE, ["val_accuracy"], max_epochs=0)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "max_epochs, result, final",
    [
        (None, {"val_accuracy": 0.8, "done": True}, True),
        (None, {"val_accuracy": 0.8, "done": False, "epoch": 3}, False),  # stopped early (ASHA)
        (None, {"val_accuracy": 0.8, "epoch": 5}, False),  # no max_epochs: only ``done`` counts
        (None, None, False),
        (None, {}, False),
        (5, {"val_accuracy": 0.8, "epoch": 5}, True),  # epoch == max_epochs
        (5, {"val_accuracy": 0.8, "epoch": 6}, True),
        (5, {"val_accuracy": 0.8, "done": False, "epoch": 3}, False),  # stopped early (ASHA)
        (5, {"val_accuracy": 0.8, "done": True, "epoch": 3}, False),  # a stopped trial's last report
        (5, {"val_accuracy": 0.8, "done": True}, False),  # max_epochs set: only the epoch counts
        (5, {"val_accuracy": 0.8, "epoch": "5"}, False),  # not a number
        (5, None, False),
    ],
)
def test_is_final_follows_the_trial_protocol(max_epochs, result, final):
    from hytnas.trial import is_complete

    p = make_problem(SPACE, ["val_accuracy", "params_k"], max_epochs=max_epochs)
    assert p.is_final(result) is final
    assert is_complete(result, max_epochs) is final  # one rule, shared with the trial protocol


@pytest.mark.parametrize(
    "metrics, expect",
    [
        ({"val_accuracy": 0.8, "done": True}, {"val_accuracy": 0.8}),
        ({"val_accuracy": 0.8, "val_loss": 0.5}, {"val_accuracy": 0.8}),  # extra metrics are ignored
        ({"val_accuracy": math.nan, "done": True}, None),
        ({"val_accuracy": math.inf}, None),
        ({"val_accuracy": None}, None),
        ({"val_loss": 1.0, "done": True}, None),  # objective missing
        (None, None),
    ],
)
def test_observed_reads_the_reported_metrics(metrics, expect):
    p = make_problem(SPACE, ["val_accuracy", "params_k"], max_epochs=5)
    assert p.observed(metrics) == expect


def test_observed_holds_reported_constraint_metrics_too():
    p = make_problem(SPACE, ["val_accuracy", "params_k"], ["val_loss <= 2"])
    assert p.observed({"val_accuracy": 0.8, "val_loss": 1.5, "params_k": 99.0}) == {"val_accuracy": 0.8,
                                                                                    "val_loss": 1.5}
    assert p.observed({"val_accuracy": 0.8}) is None  # the constraint metric is missing
    assert p.observed({"val_accuracy": 0.8, "val_loss": math.nan}) is None
    # only known objectives: an empty observation is a complete one
    assert make_problem(SPACE, ["params_k", "macs_m"]).observed({}) == {}


def test_signature_names_space_objectives_and_constraints():
    p = make_problem(SPACE, ["val_accuracy", "params_k"], ["params_k <= 100"])
    sig = p.signature()
    assert sig["space"] == SPACE.name and sig["space_id"] == SPACE.space_id
    assert sig["objectives"] == [["val_accuracy", "max", "reported"], ["params_k", "min", "known"]]
    assert len(sig["constraints"]) == 1 and "params_k" in sig["constraints"][0]
    assert make_problem(SPACE, ["val_accuracy", "params_k"], ["params_k <= 100"]).signature() == sig
    other = make_problem(SPACE, ["val_accuracy", "macs_m"]).signature()
    assert other["objectives"] != sig["objectives"]


def test_feasible_mask_matches_constraint_ok():
    p = make_problem(SPACE, ["val_accuracy"], ["latency_ms < 11.5"], known_fns={"latency_ms": enc_sum})
    archs = SPACE.sample(200, seed=0)
    mask = p.feasible_mask(archs)
    vals = enc_sum(archs)
    assert mask.tolist() == [v < 11.5 for v in vals.tolist()]
    assert 0 < int(mask.sum()) < len(archs)  # the test exercises both sides


def test_cost_metrics_come_from_arch_costs():
    from hytnas.costs import arch_costs

    p = make_problem(SPACE, ["val_accuracy", "params_k"], num_classes=7, in_channels=1, input_size=64)
    a = SPACE.sample(1, seed=3)[0]
    want = arch_costs(SPACE.to_arch_cfg(a), 64, 7, 1)["params_k"]
    assert p.known_values([a]).item() == pytest.approx(want)


def test_encode_cache_is_bit_identical_to_space_encode():
    p = make_problem(SPACE, ["val_accuracy"])
    archs = SPACE.sample(50, seed=2)
    first = p.encode(archs[:30])
    both = p.encode(archs)
    assert torch.equal(both, SPACE.encode(archs))
    assert torch.equal(first, both[:30])


def test_config_round_trips_and_carries_the_arch_id():
    p = make_problem(SPACE, ["val_accuracy"])
    a = SPACE.sample(1, seed=6)[0]
    cfg = p.config(a)
    assert cfg["arch_id"] == SPACE.arch_id(a) == p.arch_id(a)
    assert p.arch_of(cfg) == a


def test_nearest_unused_skips_used_archs():
    pool = SPACE.sample(20, seed=4)
    X = SPACE.encode(pool)
    target = pool[7]
    assert nearest_unused(target, pool, X, set(), SPACE) == target
    second = nearest_unused(target, pool, X, {target}, SPACE)
    assert second != target and second in pool
    assert nearest_unused(target, pool, X, set(pool), SPACE) is None
