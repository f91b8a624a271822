"""make_search_alg: every registered searcher suggests valid, unique, feasible trial configs,
honours its concurrency limit, never proposes outside the pool; bad settings are one line."""
from __future__ import annotations

import pytest
import torch
from ray.tune.search import Searcher

from hytnas.errors import SearchError
from hytnas.space import GENES, get_space
from hytnas.table import write_arch_table
from search_algos import SEARCHERS, make_search_alg

SPACE = get_space("hytnas-tiny")
FAST_MOBO = {"n_initial": 4, "num_random": 48, "num_mutations": 16, "local_search_steps": 1,
             "local_search_starts": 1, "mc_samples": 16, "torch_threads": 1}


def options(name: str, **extra):
    return {**(FAST_MOBO if name == "mobo" else {}), **extra}


def score(config) -> dict:
    x = SPACE.encode(SPACE.from_config(config))[0]
    return {"val_accuracy": float(1 - (x - 0.6).pow(2).mean()), "done": True}


def drive(searcher, n: int, complete_every: int = 1) -> list[dict]:
    """Ask for ``n`` configs, completing the oldest pending trial whenever the searcher waits."""
    out, live = [], []
    i = 0
    while len(out) < n:
        cfg = searcher.suggest(f"t{i}")
        if cfg is None:
            tid, c = live.pop(0)
            searcher.on_trial_complete(tid, score(c))
            continue
        if cfg == Searcher.FINISHED:
            break
        live.append((f"t{i}", cfg))
        out.append(cfg)
        i += 1
    return out


@pytest.mark.parametrize("name", SEARCHERS)
def test_configs_hold_the_23_genes_and_arch_id(name):
    s = make_search_alg(name, space=SPACE, objectives=["val_accuracy", "params_k"], seed=0, max_concurrent=2,
                        options=options(name))
    # Tune checks that results hold the searcher's metrics: every searcher asks only for the
    # reported objectives (params_k is known: computed from the arch, never read from results)
    assert s.metric == ["val_accuracy"] and s.mode == ["max"]
    cfgs = drive(s, 8)
    assert len(cfgs) == 8
    for c in cfgs:
        assert set(c) == set(GENES) | {"arch_id"}
        arch = SPACE.from_config(c)
        assert SPACE.arch_id(arch) == c["arch_id"]


@pytest.mark.parametrize("name", SEARCHERS)
def test_concurrency_limit_is_internal(name):
    s = make_search_alg(name, space=SPACE, objectives=["val_accuracy", "params_k"], seed=1, max_concurrent=2,
                        options=options(name))
    assert s.suggest("a") is not None and s.suggest("b") is not None
    assert s.suggest("c") is None  # two pending
    assert s.set_max_concurrency(3) is True  # Tune's ConcurrencyLimiter defers to the searcher
    assert s.suggest("c") is not None


@pytest.mark.parametrize("name", SEARCHERS)
def test_known_constraint_is_honoured(name):
    bound = 60.0  # about a third of hytnas-tiny's archs have fewer params (checked below)
    s = make_search_alg(name, space=SPACE, objectives=["val_accuracy", "params_k"], constraints=[f"params_k <= {bound}"],
                        seed=2, max_concurrent=1, options=options(name))
    probe = s.problem.known_values(SPACE.sample(300, seed=9))[:, 0] if hasattr(s, "problem") else None
    assert probe is not None and 0.05 < float((probe <= bound).double().mean()) < 0.95
    cfgs = drive(s, 8)
    costs = s.problem.known_values([SPACE.from_config(c) for c in cfgs])[:, 0]
    assert bool((costs <= bound).all()), costs


@pytest.mark.parametrize("name", SEARCHERS)
def test_pool_mode_stays_in_the_pool_and_finishes(name, tmp_path):
    pool = SPACE.sample(6, seed=5)
    path = tmp_path / "pool.csv"
    write_arch_table(path, SPACE, pool)
    opts = options(name, candidates=str(path))
    if name == "mobo":
        opts["n_initial"] = 2
    s = make_search_alg(name, space=SPACE, objectives=["val_accuracy", "params_k"], seed=3, max_concurrent=1,
                        options=opts)
    cfgs = drive(s, 20)
    got = [SPACE.from_config(c) for c in cfgs]
    assert set(got) <= set(pool)
    assert len(got) == len(set(got)) == len(pool)  # every candidate once, then FINISHED


@pytest.mark.parametrize("name", ["random", "mobo"])
def test_no_duplicates_over_many_suggestions(name):
    small = get_space({
        "name": "micro", "input_size": 32, "stem_channels": 8, "head_mult": 0,
        "choices": {"n": [1, 2], "t": [1, 2], "e": [1], "h": [1], "f": [1], "p": [2]},
        "width": {"c1": [8], "multipliers": [1, 2], "caps": [None, None, 32, 32, 32]},
    })
    assert small.cardinality() < 300
    s = make_search_alg(name, space=small, objectives=["val_accuracy", "params_k"], seed=4, max_concurrent=3,
                        options=options(name))
    n = 40 if name == "random" else 20
    ids = [c["arch_id"] for c in drive_space(s, small, n)]
    assert len(ids) == len(set(ids)) == n


def drive_space(searcher, space, n):
    out, live, i = [], [], 0
    while len(out) < n:
        cfg = searcher.suggest(f"t{i}")
        if cfg is None:
            tid, c = live.pop(0)
            x = space.encode(space.from_config(c))[0]
            searcher.on_trial_complete(tid, {"val_accuracy": float(x.mean()), "done": True})
            continue
        live.append((f"t{i}", cfg))
        out.append(cfg)
        i += 1
    return out


@pytest.mark.parametrize(
    "name, kwargs, match",
    [
        ("bogus", {}, "unknown; use one of mobo, random, optuna-nsga2, optuna-tpe, optuna-gp"),
        ("random", {"options": {"surrogate": "gp"}}, "unknown option 'surrogate'"),
        ("mobo", {"options": {"surrogate": "forest"}}, "surrogate 'forest': unknown; use one of gp, rank_ensemble"),
        ("mobo", {"options": {"acquisition": "ucb"}}, "acquisition 'ucb': unknown"),
        ("mobo", {"options": {"batch_size": 0}}, "batch_size: must be an integer >= 1"),
        ("mobo", {"options": {"relax_starts": -1}}, "relax_starts: must be an integer >= 0"),
        ("mobo", {"options": {"initial_center": "yes"}}, "initial_center: must be true or false"),
        ("mobo", {"options": {"surrogate_options": {"kernel": "rbf"}}},
         "surrogate_options.kernel: 'rbf' is unknown; use one of matern, categorical"),
        ("mobo", {"options": {"ref_point": {"val_accuracy": 0.1}}}, "ref_point: 'params_k'"),
        ("mobo", {"options": {"ref_point": "nadir"}}, "ref_point: 'nadir' is not a rule; use one of front, data"),
        ("mobo", {"objectives": ["accuracy"]}, "accuracy: unknown metric"),
        ("optuna-tpe", {"objectives": ["val_accuracy:biggest"]}, "sense must be 'max' or 'min'"),
        ("mobo", {"constraints": ["params_k <= 0.001"]}, "no arch of the space satisfies"),
        ("random", {"constraints": ["params_k <= 0.001"]}, "no arch of 2048 random draws satisfies"),
        ("optuna-nsga2", {"max_concurrent": 0}, "max_concurrent: must be >= 1"),
    ],
)
def test_bad_settings(name, kwargs, match):
    args = {"space": SPACE, "objectives": ["val_accuracy", "params_k"], **kwargs}
    with pytest.raises(SearchError, match=match) as info:
        make_search_alg(name, **args)
    assert "\n" not in str(info.value)


def test_known_fns_override_cost_model():
    calls = []

    def fake_params(archs):
        calls.append(len(archs))
        return torch.full((len(archs),), 1.0)

    s = make_search_alg("random", space=SPACE, objectives=["val_accuracy", "params_k"], constraints=["params_k <= 2"],
                        known_fns={"params_k": fake_params})
    assert s.suggest("a") is not None and calls


@pytest.mark.parametrize("label, attr, value", [("mobo", "acquisition", "parego"),
                                                ("mobo-qlognehvi", "acquisition", "qlognehvi"),
                                                ("mobo-rank_ensemble", "surrogate", "rank_ensemble")])
def test_benchmark_labels_are_mobo_with_options(label, attr, value):
    from hytnas.benchmark.run import SEARCHERS, make_benchmark_searcher

    pool = SPACE.sample(6, seed=3)
    s = make_benchmark_searcher(label, SPACE, ["val_accuracy", "params_k"], 0, candidates=pool, options=FAST_MOBO)
    assert label in SEARCHERS and s.kind == "mobo" and getattr(s, attr) == value
    assert {SPACE.from_config(c) for c in drive(s, 6)} == set(pool)  # pool mode
