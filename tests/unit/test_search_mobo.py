"""MOBO maths and searcher: known-objective model, acquisition values, reference points,
surrogates; the ask/tell searcher: pending archs as X_pending, failed/stopped/discarded archs,
warm start, settings."""
from __future__ import annotations

import math

import pytest
import torch
from botorch.utils.multi_objective.hypervolume import Hypervolume, infer_reference_point
from botorch.utils.multi_objective.pareto import is_non_dominated

from hytnas.errors import SearchError
from hytnas.objectives import get_objectives, parse_constraints
from hytnas.space import GENES as SPACE_GENES
from hytnas.space import get_space
from hytnas.table import write_arch_table
from search_algos import make_searcher
from search_algos.common import make_problem
from search_algos.mobo import core
from search_algos.mobo.acquisition import OutcomeLayout, build_acquisition, declared_bounds, evaluate, reference_point
from search_algos.mobo.core import RowTable, SearchSettings, make_model
from search_algos.mobo.searcher import MOBOSearcher
from search_algos.mobo.surrogates import MeanStdModel, fit_gp, fit_surrogate
from search_algos.settings import MOBOSettings
from search_algos.tune import TuneSearcher

SPACE = get_space("hytnas-tiny")
FAST = dict(num_random=48, num_mutations=16, local_search_starts=1, local_search_steps=1, relax_starts=1, relax_iters=5,
            mc_samples=16,
            torch_threads=1)


def acc(arch) -> float:
    x = SPACE.encode(arch)[0]
    return float(1 - (x - 0.6).pow(2).mean())


def done(arch) -> dict:
    return {"val_accuracy": acc(arch)}


def mobo(objectives=("val_accuracy", "params_k"), constraints=(), seed=0, **options) -> MOBOSearcher:
    s = make_searcher("mobo", space=SPACE, objectives=list(objectives), constraints=list(constraints), seed=seed,
                      options={**FAST, **options})
    assert isinstance(s, MOBOSearcher)
    return s


# ------------------------------------------------------------------------------ RowTable
def test_row_table_finds_every_row_and_rejects_unknown_ones():
    archs = SPACE.sample(300, seed=0)
    X = SPACE.encode(archs)
    V = torch.arange(300, dtype=torch.float64).reshape(-1, 1) * torch.tensor([[1.0, -2.0]], dtype=torch.float64)
    t = RowTable(X.shape[-1], 2)
    t.add(X[:200], V[:200])
    t.add(X[100:], V[100:])  # overlapping rows are added once
    assert len(t) == 300
    perm = torch.randperm(300, generator=torch.Generator().manual_seed(1))
    assert torch.equal(t(X[perm].reshape(30, 10, -1)), V[perm].reshape(30, 10, 2))
    other = SPACE.encode([a for a in SPACE.sample(20, seed=99) if a not in set(archs)])
    assert bool(t.missing(other).all())
    nearest = torch.cdist(other, X).argmin(-1)  # off the table: nearest registered row
    assert torch.equal(t(other), V[nearest])
    with pytest.raises(SearchError, match="no arch was registered"):
        RowTable(23, 2)(other)


# ------------------------------------------------------------------------------ acquisition
def hv_improvement(front: torch.Tensor, y: torch.Tensor, ref: torch.Tensor) -> float:
    hv = Hypervolume(ref_point=ref)
    both = torch.cat([front, y[None]])
    return hv.compute(both[is_non_dominated(both)]) - hv.compute(front)


def test_known_objectives_enter_as_exact_deterministic_model():
    """With only known objectives, qLogNEHVI is the log of the exact HV improvement."""
    f1 = lambda archs: SPACE.encode(archs)[:, :12].mean(-1)  # noqa: E731
    f2 = lambda archs: SPACE.encode(archs)[:, :6].mean(-1) + 0.5 * SPACE.encode(archs)[:, 12:].mean(-1)  # noqa: E731
    make_problem(SPACE, [{"name": "f1", "sense": "max", "source": "known"},
                             {"name": "f2", "sense": "min", "source": "known"}], known_fns={"f1": f1, "f2": f2})
    base = SPACE.sample(12, seed=3)
    cands = SPACE.sample(60, seed=4)
    table = RowTable(23, 2)
    Yb = torch.stack([f1(base), -f2(base)], -1)  # maximised sense
    table.add(SPACE.encode(base + cands), torch.cat([Yb, torch.stack([f1(cands), -f2(cands)], -1)]))
    model = make_model(None, table)
    Xc = SPACE.encode(cands)
    assert torch.equal(model.posterior(Xc[:, None]).mean[:, 0], torch.stack([f1(cands), -f2(cands)], -1))
    ref = reference_point(Yb)
    acqf = build_acquisition("qlognehvi", model, layout=OutcomeLayout((0, 1)), X_baseline=SPACE.encode(base),
                             ref_point=ref, mc_samples=4)
    vals = evaluate(acqf, Xc)
    front = Yb[is_non_dominated(Yb)]
    hvi = torch.tensor([hv_improvement(front, y, ref) for y in torch.stack([f1(cands), -f2(cands)], -1)],
                       dtype=torch.float64)
    pos = hvi > 1e-9
    assert 3 <= int(pos.sum()) < len(cands)  # both cases exercised
    assert torch.allclose(vals[pos].exp(), hvi[pos], rtol=0.05)
    assert float(vals[~pos].max()) < float(vals[pos].min()) - 2  # no improvement: far lower


def _two_objective_acquisition(n: int = 20, seed: int = 0):
    base = SPACE.sample(n, seed=seed)
    X = SPACE.encode(base)
    Y = torch.stack([-(X - 0.5).pow(2).sum(-1), -(X - 0.3).pow(2).sum(-1)], -1)
    model, _ = fit_gp(X, Y, seed=seed)
    acqf = build_acquisition("qlognehvi", model, layout=OutcomeLayout((0, 1)), X_baseline=X,
                             ref_point=reference_point(Y), mc_samples=16, seed=seed)
    return acqf


def test_continuous_relaxation_climbs_the_acquisition_inside_the_cube():
    acqf = _two_objective_acquisition()
    X0 = SPACE.encode(SPACE.sample(4, seed=9))
    Xc = core.relax_continuous(acqf, X0, iters=30)
    assert Xc.shape == X0.shape and float(Xc.min()) >= 0.0 and float(Xc.max()) <= 1.0
    before, after = evaluate(acqf, X0), evaluate(acqf, Xc)
    assert bool((after >= before - 1e-9).all()) and float((after - before).max()) > 0.1
    assert torch.equal(core.relax_continuous(acqf, X0, iters=0), X0)


def test_relaxed_candidates_are_scored_and_climb():
    """optimize_discrete scores what ``relax`` returns for the best candidates and can pick it."""
    cands = SPACE.sample(20, seed=1)
    target = SPACE.sample(40, seed=2)[-1]
    assert target not in cands
    x_t = SPACE.encode(target)[0]
    score = lambda archs: -(SPACE.encode(archs) - x_t).pow(2).sum(-1)  # noqa: E731
    asked = []

    def relax(starts):
        asked.append(list(starts))
        return [target]

    best, value, _ = core.optimize_discrete(score, cands, lambda a: [], starts=1, steps=0, relax=relax, relax_starts=3)
    assert best == target and value == 0.0
    ranked = sorted(cands, key=lambda a: -float(score([a])[0]))
    assert asked == [ranked[:3]]
    # off: never asked
    best0, _, _ = core.optimize_discrete(score, cands, lambda a: [], starts=1, steps=0, relax=relax, relax_starts=0)
    assert best0 in cands and len(asked) == 1


def test_searcher_with_and_without_relaxation_proposes_distinct_valid_archs():
    for relax_starts in (0, 2):
        s = mobo(n_initial=4, relax_starts=relax_starts, relax_iters=10)
        assert s.search.relax_starts == relax_starts and s.search.relax_iters == 10
        archs = run(s, 8)
        assert len(set(archs)) == 8 and all(SPACE.validate(a) == a for a in archs)


def test_reference_point_from_data_and_declared_bounds():
    Y = torch.tensor([[0.9, -300.0], [0.7, -100.0], [0.6, -400.0], [0.5, -500.0]], dtype=torch.float64)
    front = Y[is_non_dominated(Y)]  # {(0.9, -300), (0.7, -100)}
    inferred = reference_point(Y)
    # default "front": the front's nadir minus 10 % of its range (BoTorch / Ax)
    assert torch.allclose(inferred, infer_reference_point(front))
    assert bool((inferred < front.min(0).values).all()) and float(inferred[1]) > -400.0
    # "data": the nadir of all the data, looser (a new extreme point worse than the front gains volume)
    data = reference_point(Y, rule="data")
    assert torch.allclose(data, infer_reference_point(Y)) and float(data[1]) < -500.0
    with pytest.raises(SearchError, match="rule 'median': unknown; use one of front, data"):
        reference_point(Y, rule="median")
    objs = get_objectives(["val_accuracy", "params_k"])
    bounds = declared_bounds(objs, parse_constraints(["params_k <= 250", "params_k >= 10"]))
    assert math.isnan(float(bounds[0])) and float(bounds[1]) == -250.0  # only the upper bound bounds a min objective
    ref = reference_point(Y, bounds)
    assert float(ref[1]) == -250.0 and float(ref[0]) == float(inferred[0])
    lower = declared_bounds(objs, parse_constraints(["val_accuracy >= 0.5", "val_accuracy >= 0.6"]))
    assert float(lower[0]) == 0.6  # the tighter bound


# ------------------------------------------------------------------------------ surrogates
def test_gp_fits_and_warm_rebuild_is_identical():
    g = torch.Generator().manual_seed(0)
    X = torch.rand(40, 23, generator=g, dtype=torch.float64)
    Y = torch.stack([(X[:, :5] - 0.3).pow(2).sum(-1), X[:, 5:].sum(-1)], -1)
    model, warm = fit_gp(X, Y, seed=0)
    mean = model.posterior(X).mean
    r2 = 1 - (mean - Y).pow(2).sum(0) / (Y - Y.mean(0)).pow(2).sum(0)
    assert bool((r2 > 0.9).all()), r2
    rebuilt, warm2 = fit_gp(X, Y, warm=warm, refit=False)
    Xt = torch.rand(7, 23, generator=g, dtype=torch.float64)
    assert torch.allclose(rebuilt.posterior(Xt).mean, model.posterior(Xt).mean, atol=1e-10)
    assert warm2.keys() == warm.keys()


def test_categorical_kernel_learns_a_middle_optimum_the_ordinal_one_misses():
    """Hamming-type kernel: each gene's level is a category, so 'the middle level is best' is as
    easy to learn as a monotone trend (the DTLZ2-on-the-grid benchmark needs exactly that)."""
    archs = SPACE.sample(60, seed=5)
    X = SPACE.encode(archs)
    mid = [i for i in range(23) if len(SPACE.choices[SPACE_GENES[i]]) == 3][:6]
    Y = -(X[:, mid] - 0.5).abs().gt(0.25).double().sum(-1, keepdim=True)  # count of non-middle genes
    Xt = SPACE.encode(SPACE.sample(200, seed=6))
    Yt = -(Xt[:, mid] - 0.5).abs().gt(0.25).double().sum(-1, keepdim=True)
    cat, warm = fit_gp(X, Y, seed=0, kernel="categorical")
    r2 = 1 - float((cat.posterior(Xt).mean - Yt).pow(2).sum() / (Yt - Yt.mean()).pow(2).sum())
    assert r2 > 0.8, r2
    mat, _ = fit_gp(X, Y, seed=0, kernel="matern")
    assert 1 - float((mat.posterior(Xt).mean - Yt).pow(2).sum() / (Yt - Yt.mean()).pow(2).sum()) < 0.6
    rebuilt, _ = fit_gp(X, Y, warm=warm, refit=False, kernel="categorical")
    assert torch.allclose(rebuilt.posterior(Xt).mean, cat.posterior(Xt).mean, atol=1e-10)
    with pytest.raises(SearchError, match="kernel 'rbf': unknown; use one of matern, categorical"):
        fit_gp(X, Y, kernel="rbf")


def test_mean_std_model_posterior_shapes():
    preds = [lambda X: (X.sum(-1), torch.full_like(X[:, 0], 0.1)), lambda X: (-X.sum(-1), X[:, 0] + 0.1)]
    for m in (1, 2):
        model = MeanStdModel(preds[:m])
        post = model.posterior(torch.rand(5, 3, 4, dtype=torch.float64))
        assert post.mean.shape == (5, 3, m) and post.variance.shape == (5, 3, m)
        assert torch.allclose(post.variance[..., 0], torch.full((5, 3), 0.01, dtype=torch.float64))


def test_surrogate_errors():
    X = torch.rand(5, 23, dtype=torch.float64)
    with pytest.raises(SearchError, match="unknown; use one of gp, rank_ensemble"):
        fit_surrogate("forest", X, X[:, :1])
    with pytest.raises(SearchError, match="NaN"):
        fit_surrogate("gp", X, torch.full((5, 1), math.nan, dtype=torch.float64))


# ------------------------------------------------------------------------------ the searcher
def run(s: MOBOSearcher, n: int) -> list:
    """``n`` archs asked and told one at a time."""
    archs = []
    for _ in range(n):
        (a,) = s.ask(1)
        s.tell(a, done(a))
        archs.append(a)
    return archs


def test_searcher_takes_a_problem_and_frozen_settings():
    problem = make_problem(SPACE, ["val_accuracy", "params_k"])
    settings = MOBOSettings(**FAST, n_initial=3, batch_size=2)
    s = MOBOSearcher(problem, settings, seed=5)
    assert s.problem is problem and s.settings is settings and s.seed == 5
    assert s.n_initial == 3 and s.batch_size == 2 and len(s.design) == 3
    # the acquisition-optimisation settings live in ``search``
    assert isinstance(s.search, SearchSettings)
    assert (s.search.n_random, s.search.n_mutations, s.search.local_search_starts, s.search.local_search_steps,
            s.search.relax_starts, s.search.relax_iters) == (48, 16, 1, 1, 1, 5)
    same = make_searcher("mobo", space=SPACE, objectives=["val_accuracy", "params_k"], seed=5,
                         options={**FAST, "n_initial": 3, "batch_size": 2})
    assert same.settings == settings and same.design == s.design
    assert MOBOSearcher(problem).settings == MOBOSettings()


@pytest.mark.parametrize("acquisition", ["qlognehvi", "qlogehvi", "parego"])
def test_acquisitions_with_a_reported_constraint(acquisition):
    s = mobo(constraints=["val_loss <= 1.0"], acquisition=acquisition, n_initial=3)
    assert s.problem.observed_names == ["val_accuracy", "val_loss"]
    for _ in range(6):
        (a,) = s.ask(1)
        s.tell(a, {**done(a), "val_loss": 2 * (1 - acc(a)) * 10})
    assert len(s.observations) == 6 and len(s.used) == 6 and s.last_timings


def test_single_and_all_known_objectives():
    one = mobo(objectives=["val_accuracy"], n_initial=2)
    assert len(set(run(one, 4))) == 4 and one.last_timings
    known = mobo(objectives=["params_k", "macs_m"], n_initial=1)
    archs = []
    for _ in range(3):
        (a,) = known.ask(1)
        known.tell(a, {})  # nothing is reported: every objective is computed from the arch
        archs.append(a)
    assert len(known.observations) == 3
    assert known.last_timings and len(set(archs)) == 3


def test_initial_center_puts_the_middle_arch_first():
    mid = SPACE.nearest(torch.full((1, 23), 0.5, dtype=torch.float64))[0]
    s = mobo(n_initial=3, initial_center=True)
    plain = mobo(n_initial=3)
    assert s.design[0] == mid and s.design[1:] == plain.design[:2]
    assert s.ask(1) == [mid]
    assert s.state_dict()["settings"]["initial_center"] is True


def test_default_acquisition_is_parego(monkeypatch):
    names = []
    real = core.build_acquisition
    monkeypatch.setattr(core, "build_acquisition", lambda name, *a, **k: names.append(name) or real(name, *a, **k))
    s = mobo(n_initial=2)
    run(s, 3)
    assert s.acquisition == "parego" and s.settings.acquisition == "parego" and names == ["parego"]


@pytest.mark.parametrize("via", ["ask_tell", "tune"])
def test_pending_archs_go_to_the_acquisition_as_x_pending(monkeypatch, via):
    seen = []
    real = core.build_acquisition

    def spy(*args, **kwargs):
        xp = kwargs.get("X_pending")
        seen.append(0 if xp is None else xp.shape[0])
        return real(*args, **kwargs)

    monkeypatch.setattr(core, "build_acquisition", spy)
    s = mobo(n_initial=3)
    if via == "ask_tell":
        first = s.ask(3)
        assert len(first) == 3 and list(s.pending) == first  # 3 pending
        for a in first[:2]:
            s.tell(a, done(a))
        (a,) = s.ask(1)
        (b,) = s.ask(1)
    else:  # the concurrency limit lives in the adapter
        t = TuneSearcher(s, max_concurrent=3)
        cfgs = [t.suggest(f"d{i}") for i in range(3)]
        assert t.suggest("blocked") is None  # 3 pending
        first = [SPACE.from_config(c) for c in cfgs]
        for i in range(2):
            t.on_trial_complete(f"d{i}", {**done(first[i]), "done": True})
        a, b = (SPACE.from_config(t.suggest(f"m{i}")) for i in range(2))
        assert t.suggest("blocked") is None  # d2, m0, m1 pending
    assert seen == [1, 2]  # d2 pending, then d2 + m0
    assert len(set(first + [a, b])) == 5


def test_failed_and_stopped_archs_are_recorded_never_modelled_never_reproposed():
    pool = SPACE.sample(8, seed=7)
    s = mobo(candidates=pool, n_initial=2)
    a0, a1 = s.ask(2)
    s.tell_failed(a0, RuntimeError("CUDA OOM"))
    s.tell_stopped(a1)  # e.g. stopped early by ASHA
    assert s.failed == [a0] and s.discarded == [a1]
    assert s.observations == [] and not s.pending
    rest = run(s, 6)
    assert len(s.observations) == 6 and not {a for a, _ in s.observations} & {a0, a1}
    got = [a0, a1] + rest
    assert sorted(map(SPACE.arch_id, got)) == sorted(map(SPACE.arch_id, pool))
    assert s.ask(1) == []  # the pool is used up


def test_warm_start_from_a_table(tmp_path):
    prior = SPACE.sample(6, seed=11)
    path = tmp_path / "prior.csv"
    write_arch_table(path, SPACE, prior, [{"val_accuracy": acc(a)} for a in prior])
    s = mobo(warm_start=path, n_initial=4)
    assert s.n_warm == 6 and s.design == [] and len(s.observations) == 6
    (a,) = s.ask(1)
    assert a not in set(prior) and s.last_timings  # model-based at once
    assert mobo(warm_start=str(path), n_initial=4).ask(1) == [a]  # a str path is the same table
    bad = tmp_path / "bad.csv"
    write_arch_table(bad, SPACE, prior, [{"latency_ms": 1.0} for _ in prior])
    with pytest.raises(SearchError, match="warm_start: .*missing metric column 'val_accuracy'") as info:
        mobo(warm_start=bad)
    assert "\n" not in str(info.value)


def test_rank_ensemble_surrogate_runs():
    s = mobo(surrogate="rank_ensemble", n_initial=4, surrogate_options={"epochs": 40, "n_members": 3})
    assert len(set(run(s, 6))) == 6
    s2 = mobo(surrogate="rank_ensemble", n_initial=2, surrogate_options={"bogus": 1})
    with pytest.raises(SearchError, match="surrogate rank_ensemble: .*bogus"):
        run(s2, 3)  # the fit options are checked at the first fit
