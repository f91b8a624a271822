"""make_searcher: every registered searcher asks for valid, unique, feasible archs, never proposes
outside the pool and stops when it is used up, never re-proposes a failed or stopped arch; bad
settings are one line naming the option. The Ray adapter (search_algos.tune) turns archs into trial
configs, holds the concurrency limit and reads trial results by the trial protocol."""
from __future__ import annotations

import pydantic
import pytest
import torch
from ray.tune.search import Searcher as RaySearcher

from hytnas.errors import SearchError
from hytnas.space import GENES, get_space
from hytnas.table import write_arch_table
from search_algos import SEARCHERS, SETTINGS, make_searcher, parse_settings
from search_algos.settings import MOBOSettings, OptunaSettings, RandomSettings
from search_algos.tune import TuneSearcher, make_search_alg

SPACE = get_space("hytnas-tiny")
OBJECTIVES = ["val_accuracy", "params_k"]
FAST_MOBO = {"n_initial": 4, "num_random": 48, "num_mutations": 16, "local_search_steps": 1,
             "local_search_starts": 1, "mc_samples": 16, "torch_threads": 1}


def options(name: str, **extra):
    return {**(FAST_MOBO if name == "mobo" else {}), **extra}


def build(name: str, *, seed: int = 0, space=SPACE, constraints=(), **extra):
    return make_searcher(name, space=space, objectives=OBJECTIVES, constraints=constraints, seed=seed,
                         options=options(name, **extra))


def score(arch, space=SPACE) -> dict:
    x = space.encode(arch)[0]
    return {"val_accuracy": float(1 - (x - 0.6).pow(2).mean())}


def loop(searcher, n: int, concurrent: int = 1, space=SPACE) -> list:
    """Ask for up to ``n`` archs one at a time with at most ``concurrent`` of them pending, telling
    the oldest pending one whenever that many are out; stops early when nothing is left."""
    out, live = [], []
    while len(out) < n:
        if len(live) >= concurrent:
            a = live.pop(0)
            searcher.tell(a, score(a, space))
            continue
        got = searcher.ask(1)
        if not got:
            break
        assert len(got) == 1
        live += got
        out += got
    return out


def drive(searcher, n: int) -> list[dict]:
    """Through the adapter: ``n`` configs, completing the oldest running trial whenever it waits."""
    out, live = [], []
    i = 0
    while len(out) < n:
        cfg = searcher.suggest(f"t{i}")
        if cfg is None:
            tid, c = live.pop(0)
            searcher.on_trial_complete(tid, {**score(SPACE.from_config(c)), "done": True})
            continue
        if cfg == RaySearcher.FINISHED:
            break
        live.append((f"t{i}", cfg))
        out.append(cfg)
        i += 1
    return out


# ------------------------------------------------------------------------------ the core (ask/tell)
@pytest.mark.parametrize("name", SEARCHERS)
def test_ask_returns_valid_archs_of_the_space(name):
    s = build(name)
    assert s.kind == name and s.problem.space is SPACE
    got = s.ask(3)  # a batch of pending archs
    assert len(got) == 3
    got += loop(s, 5, concurrent=2)
    assert len(got) == 8
    for a in got:
        assert SPACE.validate(a) == a
        assert SPACE.from_config(s.problem.config(a)) == a
    if not name.startswith("optuna-"):  # Optuna may propose an arch twice (re-evaluated); ours never do
        assert len(set(got)) == 8


@pytest.mark.parametrize("name", SEARCHERS)
def test_known_constraint_is_honoured(name):
    bound = 60.0  # about a third of hytnas-tiny's archs have fewer params (checked below)
    s = build(name, seed=2, constraints=[f"params_k <= {bound}"])
    probe = s.problem.known_values(SPACE.sample(300, seed=9))[:, 0]
    assert 0.05 < float((probe <= bound).double().mean()) < 0.95
    archs = loop(s, 8)
    assert len(archs) == 8
    costs = s.problem.known_values(archs)[:, 0]
    assert bool((costs <= bound).all()), costs


@pytest.mark.parametrize("name", SEARCHERS)
def test_pool_mode_stays_in_the_pool_and_finishes(name, tmp_path):
    pool = SPACE.sample(6, seed=5)
    path = tmp_path / "pool.csv"
    write_arch_table(path, SPACE, pool)
    extra = {"n_initial": 2} if name == "mobo" else {}
    s = build(name, seed=3, candidates=str(path), **extra)
    got = loop(s, 20)
    assert set(got) <= set(pool)
    assert len(got) == len(set(got)) == len(pool)  # every candidate once, then nothing left
    assert s.ask(1) == [] and s.ask(3) == []


@pytest.mark.parametrize("name", SEARCHERS)
def test_failed_stopped_and_discarded_archs_are_never_reproposed(name):
    pool = SPACE.sample(7, seed=8)
    extra = {"n_initial": 2} if name == "mobo" else {}
    s = build(name, seed=5, candidates=pool, **extra)
    a_failed, a_stopped, a_nan, a_missing = s.ask(4)
    s.tell_failed(a_failed, RuntimeError("CUDA OOM"))
    s.tell_stopped(a_stopped)
    s.tell(a_nan, {"val_accuracy": float("nan")})  # a final result that is not finite: discarded
    s.tell(a_missing, {"val_loss": 0.3})  # the reported objective is missing: discarded
    rest = loop(s, 20)
    first = {a_failed, a_stopped, a_nan, a_missing}
    assert len(first) == 4 and not first & set(rest)
    assert sorted(map(SPACE.arch_id, [*first, *rest])) == sorted(map(SPACE.arch_id, pool))


def observed_values(s) -> list[float]:
    """The ``val_accuracy`` of every observation the searcher holds (Optuna: its complete trials)."""
    if hasattr(s, "study"):
        from optuna.trial import TrialState

        return [t.values[0] for t in s.study.get_trials() if t.state == TrialState.COMPLETE]
    return [m["val_accuracy"] for _, m in s.observations]


@pytest.mark.parametrize("name", SEARCHERS)
def test_warm_start_archs_are_observed_and_never_reproposed(name, tmp_path):
    prior = SPACE.sample(6, seed=11)
    fresh = [a for a in SPACE.sample(12, seed=12) if a not in set(prior)][:3]
    path = tmp_path / "prior.csv"
    write_arch_table(path, SPACE, prior, [score(a) for a in prior])
    extra = {"n_initial": 2} if name == "mobo" else {}
    s = build(name, seed=6, candidates=prior + fresh, warm_start=str(path), **extra)
    want = sorted(score(a)["val_accuracy"] for a in prior)
    assert sorted(observed_values(s)) == pytest.approx(want, abs=1e-5)  # the table keeps 6 decimals
    got = loop(s, 20)
    assert sorted(map(SPACE.arch_id, got)) == sorted(map(SPACE.arch_id, fresh))  # the prior archs never


@pytest.mark.parametrize("name", SEARCHERS)
def test_an_arch_evaluated_elsewhere_is_recorded_or_refused(name):
    s = build(name, seed=7)
    a = SPACE.sample(1, seed=12)[0]
    s.tell(a, {"val_accuracy": 0.61})  # an arch it never proposed (e.g. add_evaluated_point)
    assert observed_values(s) == [0.61]


@pytest.mark.parametrize("name", ["random", "mobo"])
def test_no_duplicates_over_many_suggestions(name):
    small = get_space({
        "name": "micro", "input_size": 32, "stem_channels": 8, "head_mult": 0,
        "choices": {"n": [1, 2], "t": [1, 2], "e": [1], "h": [1], "f": [1], "p": [2]},
        "width": {"c1": [8], "multipliers": [1, 2], "caps": [None, None, 32, 32, 32]},
    })
    assert small.cardinality() < 300
    s = build(name, seed=4, space=small)
    n = 40 if name == "random" else 20
    ids = [small.arch_id(a) for a in loop(s, n, concurrent=3, space=small)]  # three pending at a time
    assert len(ids) == len(set(ids)) == n


def test_known_fns_override_cost_model():
    calls = []

    def fake_params(archs):
        calls.append(len(archs))
        return torch.full((len(archs),), 1.0)

    s = make_searcher("random", space=SPACE, objectives=OBJECTIVES, constraints=["params_k <= 2"],
                      known_fns={"params_k": fake_params})
    assert len(s.ask(1)) == 1 and calls


# ------------------------------------------------------------------------------ settings
@pytest.mark.parametrize(
    "name, kwargs, match",
    [
        ("bogus", {}, "searcher 'bogus': unknown; use one of mobo, random, optuna-nsga2, optuna-tpe, optuna-gp"),
        ("random", {"options": {"surrogate": "gp"}},
         "searcher random: unknown option 'surrogate'; valid options: candidates, max_epochs, warm_start$"),
        ("optuna-tpe", {"options": {"batch_size": 2}}, "searcher optuna-tpe: unknown option 'batch_size'"),
        ("mobo", {"options": {"surrogate": "forest"}},
         "searcher mobo: option surrogate: .*'gp' or 'rank_ensemble' \\(got 'forest'\\)"),
        ("mobo", {"options": {"acquisition": "ucb"}},
         "searcher mobo: option acquisition: .*'qlognehvi', 'qlogehvi' or 'parego' \\(got 'ucb'\\)"),
        ("mobo", {"options": {"batch_size": 0}}, "option batch_size: .*greater than or equal to 1 \\(got 0\\)"),
        ("mobo", {"options": {"relax_starts": -1}}, "option relax_starts: .*greater than or equal to 0 \\(got -1\\)"),
        ("mobo", {"options": {"initial_center": "yes"}}, "option initial_center: .*boolean \\(got 'yes'\\)"),
        ("mobo", {"options": {"n_initial": "3"}}, "option n_initial: .*integer \\(got '3'\\)"),  # strict types
        ("mobo", {"options": {"num_random": 2.5}}, "option num_random: .*integer \\(got 2.5\\)"),
        ("optuna-nsga2", {"options": {"max_rejections": 0}}, "option max_rejections: .*greater than or equal to 1"),
        ("random", {"options": {"max_epochs": 0}}, "option max_epochs: .*greater than or equal to 1"),
        ("mobo", {"options": {"surrogate_options": {"kernel": "rbf"}}},
         "option surrogate_options: kernel 'rbf' is unknown; use one of matern, categorical"),
        ("mobo", {"options": {"ref_point": {"val_accuracy": 0.1}}}, "ref_point: 'params_k'"),
        ("mobo", {"options": {"ref_point": "nadir"}}, "option ref_point.*'front' or 'data' \\(got 'nadir'\\)"),
        ("mobo", {"objectives": ["accuracy"]}, "accuracy: unknown metric"),
        ("optuna-tpe", {"objectives": ["val_accuracy:biggest"]}, "sense must be 'max' or 'min'"),
        ("mobo", {"constraints": ["params_k <= 0.001"]}, "no arch of the space satisfies"),
        ("random", {"constraints": ["params_k <= 0.001"]}, "no arch of 2048 random draws satisfies"),
    ],
)
def test_bad_settings(name, kwargs, match):
    args = {"space": SPACE, "objectives": OBJECTIVES, **kwargs}
    with pytest.raises(SearchError, match=match) as info:
        make_searcher(name, **args)
    assert "\n" not in str(info.value)


def test_optuna_gives_up_on_an_unsatisfiable_constraint_at_the_first_ask():
    s = make_searcher("optuna-nsga2", space=SPACE, objectives=OBJECTIVES, constraints=["params_k <= 0.001"],
                      options={"max_rejections": 20})
    with pytest.raises(SearchError, match="constraints: 20 Optuna draws in a row violate params_k") as info:
        s.ask(1)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("name", list(SETTINGS))
def test_every_registry_names_an_unknown_option_and_its_valid_ones(name):
    with pytest.raises(SearchError) as info:
        parse_settings(name, {"no_such_option": 1})
    msg = str(info.value)
    assert "\n" not in msg and f"searcher {name}: unknown option 'no_such_option'; valid options: " in msg
    assert msg.split("valid options: ")[1].split(", ") == sorted(SETTINGS[name].model_fields)


def test_settings_are_frozen_objects_and_accepted_as_options():
    assert SEARCHERS == ("mobo", "random", "optuna-nsga2", "optuna-tpe", "optuna-gp")
    assert SETTINGS["mobo"] is MOBOSettings and SETTINGS["random"] is RandomSettings
    assert all(SETTINGS[n] is OptunaSettings for n in SEARCHERS if n.startswith("optuna-"))
    st = parse_settings("mobo", {"batch_size": 2})
    assert isinstance(st, MOBOSettings) and st.batch_size == 2 and st.acquisition == "parego"
    assert parse_settings("mobo", st) is st
    with pytest.raises(pydantic.ValidationError, match="frozen"):
        st.batch_size = 3
    s = make_searcher("mobo", space=SPACE, objectives=OBJECTIVES, options=MOBOSettings(**FAST_MOBO, batch_size=2))
    assert s.settings.batch_size == 2 and s.batch_size == 2 and s.search.n_random == FAST_MOBO["num_random"]
    with pytest.raises(SearchError, match="searcher random: unknown option 'surrogate'"):
        parse_settings("random", MOBOSettings(surrogate="gp"))  # another searcher's settings: its set options


# ------------------------------------------------------------------------------ the Ray adapter
@pytest.mark.parametrize("name", SEARCHERS)
def test_configs_hold_the_23_genes_and_arch_id(name):
    s = make_search_alg(name, space=SPACE, objectives=OBJECTIVES, seed=0, max_concurrent=2, options=options(name))
    assert isinstance(s, TuneSearcher) and isinstance(s, RaySearcher) and s.core.kind == name
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
    s = make_search_alg(name, space=SPACE, objectives=OBJECTIVES, seed=1, max_concurrent=2, options=options(name))
    a, b = s.suggest("a"), s.suggest("b")
    assert a is not None and b is not None
    assert s.suggest("a") == a  # Tune asks again for a trial it has: the same config, nothing new
    assert s.suggest("c") is None  # two pending
    assert len(s.core.pending) == 2
    assert s.set_max_concurrency(3) is True  # Tune's ConcurrencyLimiter defers to the searcher
    assert s.suggest("c") is not None
    assert s.suggest("d") is None
    s.on_trial_complete("a", {**score(SPACE.from_config(a)), "done": True})
    assert s.suggest("d") is not None  # a slot freed


@pytest.mark.parametrize("name", SEARCHERS)
def test_adapter_finishes_when_the_pool_is_used_up(name):
    pool = SPACE.sample(2, seed=6)
    s = make_search_alg(name, space=SPACE, objectives=OBJECTIVES, seed=0, max_concurrent=1,
                        options=options(name, candidates=pool, **({"n_initial": 2} if name == "mobo" else {})))
    cfgs = drive(s, 10)
    assert {SPACE.from_config(c) for c in cfgs} == set(pool) and len(cfgs) == 2
    assert s.suggest("later") == RaySearcher.FINISHED


def test_adapter_reads_results_by_the_trial_protocol():
    s = make_search_alg("random", space=SPACE, objectives=OBJECTIVES, seed=0, max_concurrent=6,
                        options={"max_epochs": 5})
    cfg = {t: s.suggest(t) for t in ("err", "asha", "done", "final", "late", "nan")}
    arch = {t: SPACE.from_config(c) for t, c in cfg.items()}
    core = s.core
    s.on_trial_complete("err", None, error=True)
    s.on_trial_complete("asha", {"val_accuracy": 0.3, "done": False, "epoch": 1})  # stopped early
    s.on_trial_complete("done", {"val_accuracy": 0.4, "done": True, "epoch": 2})  # done, short of max_epochs
    s.on_trial_complete("final", {"val_accuracy": 0.8, "done": True, "epoch": 5})
    s.on_trial_complete("late", {"val_accuracy": 0.7, "epoch": 6})
    s.on_trial_complete("nan", {"val_accuracy": float("nan"), "epoch": 5})
    assert core.failed == [arch["err"]]
    assert core.discarded == [arch["asha"], arch["done"], arch["nan"]]
    assert core.observations == [(arch["final"], {"val_accuracy": 0.8}), (arch["late"], {"val_accuracy": 0.7})]
    assert not core.pending and not s.trials
    s.on_trial_complete("never-suggested", None)  # unknown trial without a config: ignored
    assert len(core.observations) == 2
    # no max_epochs: the ``done`` flag decides
    s2 = make_search_alg("random", space=SPACE, objectives=OBJECTIVES, seed=0)
    c = s2.suggest("t0")
    s2.on_trial_complete("t0", {"val_accuracy": 0.5, "done": True})
    assert s2.core.observations == [(SPACE.from_config(c), {"val_accuracy": 0.5})]


def test_adapter_tells_trials_it_did_not_hand_out_by_their_config():
    s = make_search_alg("random", space=SPACE, objectives=OBJECTIVES, seed=0)
    a, b, c = SPACE.sample(3, seed=12)
    s.on_trial_complete("restored-elsewhere", {"config": SPACE.to_config(a), "val_accuracy": 0.6, "done": True})
    s.add_evaluated_point(SPACE.to_config(b), [0.55])  # a sequence in the order of observed_names
    s.add_evaluated_point(SPACE.to_config(c), None, error=True)
    assert s.core.observations == [(a, {"val_accuracy": 0.6}), (b, {"val_accuracy": 0.55})]
    assert s.core.failed == [c]
    with pytest.raises(SearchError, match="expected 1 values \\(val_accuracy\\), got 2"):
        s.add_evaluated_point(SPACE.to_config(SPACE.sample(4, seed=13)[-1]), [0.5, 0.6])
    got = SPACE.from_config(s.suggest("t0"))
    assert got not in {a, b, c}  # never proposed again


def test_adapter_bad_max_concurrent_is_one_line():
    with pytest.raises(SearchError, match="max_concurrent: must be >= 1") as info:
        make_search_alg("optuna-nsga2", space=SPACE, objectives=OBJECTIVES, max_concurrent=0)
    assert "\n" not in str(info.value)


def test_adapter_takes_the_same_arguments_as_make_searcher():
    calls = []

    def fake_params(archs):
        calls.append(len(archs))
        return torch.full((len(archs),), 1.0)

    s = make_search_alg("random", space=SPACE, objectives=OBJECTIVES, constraints=["params_k <= 2"],
                        known_fns={"params_k": fake_params}, seed=3, num_classes=7, in_channels=1)
    assert s.suggest("a") is not None and calls
    assert s.core.seed == 3 and s.core.problem.known.num_classes == 7


@pytest.mark.parametrize("label, attr, value", [("mobo", "acquisition", "parego"),
                                                ("mobo-qlognehvi", "acquisition", "qlognehvi"),
                                                ("mobo-rank_ensemble", "surrogate", "rank_ensemble")])
def test_benchmark_labels_are_mobo_with_options(label, attr, value):
    from hytnas.benchmark.run import SEARCHERS as LABELS
    from hytnas.benchmark.run import make_benchmark_searcher

    pool = SPACE.sample(6, seed=3)
    s = make_benchmark_searcher(label, SPACE, OBJECTIVES, 0, candidates=pool, options=FAST_MOBO)
    core = s.core if isinstance(s, TuneSearcher) else s
    assert label in LABELS and core.kind == "mobo" and getattr(core, attr) == value
    if isinstance(s, TuneSearcher):
        got = {SPACE.from_config(c) for c in drive(s, 6)}
    else:
        got = set(loop(s, 6))
    assert got == set(pool)  # pool mode
