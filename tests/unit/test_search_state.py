"""Searcher state: a versioned plain JSON dict (``state_dict`` / ``save``, written atomically);
``load_state_dict`` / ``restore`` (and unpickling) refit and continue exactly where the search
was: same next proposal, no repeats. The Ray adapter saves the core state plus its trial -> arch
map. State saved by another searcher, for another space or other objectives is refused in one line."""
from __future__ import annotations

import json
import pickle

import pytest
from optuna.trial import TrialState

from hytnas.errors import SearchError
from hytnas.space import get_space
from search_algos import SEARCHERS, make_searcher
from search_algos.tune import make_search_alg

SPACE = get_space("hytnas-tiny")
OBJECTIVES = ["val_accuracy", "params_k"]
FAST_MOBO = {"n_initial": 3, "num_random": 48, "num_mutations": 16, "local_search_steps": 1,
             "local_search_starts": 1, "mc_samples": 16, "torch_threads": 1}
MICRO = {
    "name": "micro", "input_size": 32, "stem_channels": 8, "head_mult": 0,
    "choices": {"n": [1, 2], "t": [1, 2], "e": [1], "h": [1], "f": [1], "p": [2]},
    "width": {"c1": [8], "multipliers": [1, 2], "caps": [None, None, 32, 32, 32]},
}


def name_and_options(name: str, **extra) -> tuple[str, dict]:
    opts = {**(FAST_MOBO if name.startswith("mobo") else {}), **extra}
    if name == "mobo-rank_ensemble":
        name, opts = "mobo", {**opts, "surrogate": "rank_ensemble", "surrogate_options": {"epochs": 30, "n_members": 3}}
    return name, opts


def build(name: str, seed: int = 0, space=SPACE, objectives=OBJECTIVES, **extra):
    name, opts = name_and_options(name, **extra)
    return make_searcher(name, space=space, objectives=objectives, seed=seed, options=opts)


def build_tune(name: str, seed: int = 0, max_concurrent: int = 2):
    name, opts = name_and_options(name)
    return make_search_alg(name, space=SPACE, objectives=OBJECTIVES, seed=seed, max_concurrent=max_concurrent,
                           options=opts)


def result(arch) -> dict:
    x = SPACE.encode(arch)[0]
    return {"val_accuracy": float(1 - (x - 0.6).pow(2).mean())}


def advance(s, n: int) -> list:
    """``n`` archs asked one at a time; the last one is left pending, the second one fails."""
    archs = []
    for i in range(n):
        (a,) = s.ask(1)
        archs.append(a)
        if i == 1:
            s.tell_failed(a, "CUDA OOM")
        elif i < n - 1:
            s.tell(a, result(a))
    return archs


def advance_tune(s, n: int) -> list[dict]:
    """Through the adapter: ``n`` trials; the last one is left running, trial t1 errors."""
    cfgs = []
    for i in range(n):
        cfgs.append(s.suggest(f"t{i}"))
        if i == 1:
            s.on_trial_complete("t1", None, error=True)
        elif i < n - 1:
            s.on_trial_complete(f"t{i}", {**result(SPACE.from_config(cfgs[-1])), "done": True})
    return cfgs


# ------------------------------------------------------------------------------ the core
@pytest.mark.parametrize("name", ["mobo", "mobo-rank_ensemble", "random"])
def test_save_restore_gives_the_identical_next_proposal(name, tmp_path):
    a = build(name)
    archs = advance(a, 6)
    path = tmp_path / "searcher-state.json"
    a.save(path)
    state = json.loads(path.read_text())  # plain JSON
    assert state == json.loads(json.dumps(a.state_dict()))
    assert state["format"] == "hytnas-searcher-state" and state["version"] == 2 and state["searcher"] == a.kind
    assert state["pending"] == [SPACE.to_vector(archs[-1])]  # gene vectors, no trial ids
    assert "max_concurrent" not in state
    assert state["failed"] == [SPACE.to_vector(archs[1])] and len(state["observations"]) == 4
    b = build(name, seed=123)  # the seed comes back from the state
    b.restore(path)
    assert b.seed == 0 and b.pending == a.pending and b.used == a.used
    if name.startswith("mobo"):
        assert a._model is not None  # fitted: 4 observations, 3 initial archs
    c = pickle.loads(pickle.dumps(a))  # what tune.Tuner stores: no fitted model inside
    assert getattr(c, "_model", None) is None
    d = build(name, seed=7)
    d.load_state_dict(a.state_dict())
    na, nb, nc, nd = a.ask(1), b.ask(1), c.ask(1), d.ask(1)
    assert len(na) == 1 and na == nb == nc == nd
    # the pending arch completes after the restore: recorded once, never proposed again
    b.tell(archs[-1], result(archs[-1]))
    assert len(b.observations) == 5 and not set(b.pending) - set(nb)
    used = set(nb) | {SPACE.from_vector(g) for g in state["used"]}
    more = b.ask(2)
    assert len(more) == 2 and not set(more) & used


@pytest.mark.parametrize("name", [n for n in SEARCHERS if n.startswith("optuna-")])
def test_optuna_state_is_plain_json_and_replays(name, tmp_path):
    a = build(name)
    archs = advance(a, 5)
    path = tmp_path / "state.json"
    a.save(path)
    state = json.loads(path.read_text())
    assert state == json.loads(json.dumps(a.state_dict()))
    assert state["format"] == "hytnas-optuna-state" and state["version"] == 2 and state["searcher"] == name
    assert len(state["trials"]) >= 5 and "ray_trials" not in state
    (p,) = state["pending"]  # [{number, genes}]
    assert p["genes"] == SPACE.to_vector(archs[-1]) and isinstance(p["number"], int)
    b = build(name, seed=1)
    b.restore(path)
    assert len(b.study.get_trials()) == len(a.study.get_trials())
    assert [x for x, _ in b.pending] == [archs[-1]] and b.used == a.used
    c = pickle.loads(pickle.dumps(a))  # replayed into a fresh study
    assert len(c.study.get_trials()) == len(a.study.get_trials()) and [x for x, _ in c.pending] == [archs[-1]]
    b.tell(archs[-1], result(archs[-1]))  # the pending arch finishes after the restore
    complete = [t for t in b.study.get_trials() if t.state == TrialState.COMPLETE]
    assert len(complete) == 4 and not b.pending
    assert complete[-1].values[0] == pytest.approx(result(archs[-1])["val_accuracy"])
    assert [t.state for t in b.study.get_trials()].count(TrialState.FAIL) >= 1  # the failed arch
    assert len(b.ask(1)) == 1


# ------------------------------------------------------------------------------ the Ray adapter
@pytest.mark.parametrize("name", SEARCHERS)
def test_tune_adapter_saves_the_core_state_and_its_trials(name, tmp_path):
    a = build_tune(name, max_concurrent=2)
    cfgs = advance_tune(a, 6)
    path = tmp_path / "tune-state.json"
    a.save(path)
    state = json.loads(path.read_text())
    assert state["format"] == "hytnas-tune-searcher" and state["version"] == 2 and state["max_concurrent"] == 2
    assert state["trials"] == {"t5": {"genes": SPACE.to_vector(SPACE.from_config(cfgs[-1])), "after": [], "told": False}}
    assert state["searcher"]["searcher"] == name and state["searcher"]["version"] == 2
    b = build_tune(name, seed=123, max_concurrent=1)
    b.restore(path)
    assert b.max_concurrent == 2 and b.trials == a.trials
    c = pickle.loads(pickle.dumps(a))  # what tune.Tuner stores
    assert getattr(c.core, "_model", None) is None
    na, nb, nc = a.suggest("next"), b.suggest("next"), c.suggest("next")
    assert na is not None and nb is not None and nc is not None
    if not name.startswith("optuna-"):  # Optuna's sampler restarts from its seed: a different next draw
        assert na == nb == nc
    assert b.suggest("blocked") is None  # t5 and next running: the saved limit of 2
    # the running trial completes after the restore, by its trial id
    b.on_trial_complete("t5", {**result(SPACE.from_config(cfgs[-1])), "done": True})
    assert "t5" not in b.trials
    if name.startswith("optuna-"):
        assert len([t for t in b.core.study.get_trials() if t.state == TrialState.COMPLETE]) == 5
    else:
        assert len(b.core.observations) == 5
    nxt = b.suggest("m0")
    assert nxt is not None and b.suggest("next") == nb  # "next" is still its own trial
    if not name.startswith("optuna-"):
        assert nxt["arch_id"] not in {c["arch_id"] for c in [*cfgs, nb]}


# ------------------------------------------------------------------------------ refused states
@pytest.mark.parametrize(
    "mutate, match",
    [
        (lambda s: s.update(version=99), "version 99 is not supported \\(expected 2\\)"),
        (lambda s: s.update(version=1), "version 1 is not supported \\(expected 2\\)"),  # the Ray-era state
        (lambda s: s.pop("format"), "not a hytnas-searcher-state"),
        (lambda s: s.update(space_id="000000000000"), "restore with the same space"),
        (lambda s: s.update(objectives=[["val_accuracy", "max", "reported"]]), "saved for objectives"),
        (lambda s: s.update(searcher="random"), "saved by the 'random' searcher, not 'mobo'"),
        (lambda s: s.pop("observations"), "malformed"),
        (lambda s: s.update(pending={"t1": s["used"][0]}), "malformed"),  # v1's trial-id dict
    ],
)
def test_bad_state_is_one_line(mutate, match, tmp_path):
    a = build("mobo")
    advance(a, 3)
    state = a.state_dict()
    mutate(state)
    path = tmp_path / "s.json"
    path.write_text(json.dumps(state))
    with pytest.raises(SearchError, match=match) as info:
        build("mobo").restore(path)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("name", SEARCHERS)
def test_state_of_another_space_objectives_or_searcher_is_refused(name):
    mine = build(name)
    cases = [
        (build(name, space=get_space(MICRO)).state_dict(), "saved for space 'micro'.*restore with the same space"),
        (build(name, objectives=["val_accuracy", "macs_m"]).state_dict(), "saved for objectives"),
    ]
    other = "random" if name != "random" else "mobo"
    other_state = build(other).state_dict()
    if name.startswith("optuna-"):
        cases.append((other_state, "not a hytnas-optuna-state"))
        sibling = "optuna-tpe" if name != "optuna-tpe" else "optuna-nsga2"
        cases.append((build(sibling).state_dict(), f"saved by the '{sibling}' searcher, not '{name}'"))
    else:
        cases.append((other_state, f"saved by the '{other}' searcher, not '{name}'"))
        cases.append((build("optuna-tpe").state_dict(), "not a hytnas-searcher-state"))
    for state, match in cases:
        with pytest.raises(SearchError, match=match) as info:
            mine.load_state_dict(state)
        assert "\n" not in str(info.value)
    assert len(mine.ask(1)) == 1  # still usable


def test_core_and_adapter_files_are_not_interchangeable(tmp_path):
    core, tune = tmp_path / "core.json", tmp_path / "tune.json"
    build("random").save(core)
    build_tune("random").save(tune)
    with pytest.raises(SearchError, match="not a version-2 hytnas-tune-searcher"):
        build_tune("random").restore(core)
    with pytest.raises(SearchError, match="not a hytnas-searcher-state"):
        build("random").restore(tune)


def test_unreadable_state_file(tmp_path):
    path = tmp_path / "s.json"
    path.write_text("{not json")
    with pytest.raises(SearchError, match="not valid JSON"):
        build("random").restore(path)
    with pytest.raises(SearchError, match="cannot be read"):
        build("random").restore(tmp_path / "missing.json")
