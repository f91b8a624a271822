"""Searcher state: a versioned plain JSON dict, saved atomically; restore (and unpickling) refits
and continues exactly where the search was: same next suggestion, no repeats."""
from __future__ import annotations

import json
import pickle

import pytest

from hytnas.errors import SearchError
from hytnas.space import get_space
from search_algos import SEARCHERS, make_search_alg

SPACE = get_space("hytnas-tiny")
FAST_MOBO = {"n_initial": 3, "num_random": 48, "num_mutations": 16, "local_search_steps": 1,
             "local_search_starts": 1, "mc_samples": 16, "torch_threads": 1}


def build(name: str, seed: int = 0, **extra):
    opts = {**(FAST_MOBO if name.startswith("mobo") else {}), **extra}
    if name == "mobo-rank_ensemble":
        name, opts = "mobo", {**opts, "surrogate": "rank_ensemble", "surrogate_options": {"epochs": 30, "n_members": 3}}
    return make_search_alg(name, space=SPACE, objectives=["val_accuracy", "params_k"], seed=seed, max_concurrent=2,
                           options=opts)


def result(cfg) -> dict:
    x = SPACE.encode(SPACE.from_config(cfg))[0]
    return {"val_accuracy": float(1 - (x - 0.6).pow(2).mean()), "done": True}


def advance(s, n: int) -> list[dict]:
    """``n`` trials; the last one is left pending, one earlier one errors."""
    cfgs = []
    for i in range(n):
        cfgs.append(s.suggest(f"t{i}"))
        if i == 1:
            s.on_trial_complete("t1", None, error=True)
        elif i < n - 1:
            s.on_trial_complete(f"t{i}", result(cfgs[-1]))
    return cfgs


@pytest.mark.parametrize("name", ["mobo", "mobo-rank_ensemble", "random"])
def test_save_restore_gives_the_identical_next_suggestion(name, tmp_path):
    a = build(name)
    advance(a, 6)
    path = tmp_path / "searcher-state.json"
    a.save(path)
    state = json.loads(path.read_text())  # plain JSON
    assert state["version"] == 1 and state["searcher"] == a.kind and len(state["pending"]) == 1
    assert len(state["failed"]) == 1 and len(state["observations"]) == 4
    b = build(name, seed=123)  # the seed comes back from the state
    b.restore(path)
    c = pickle.loads(pickle.dumps(a))  # what tune.Tuner stores: no fitted model inside
    assert getattr(c, "_model", None) is None
    na, nb, nc = a.suggest("next"), b.suggest("next"), c.suggest("next")
    assert na == nb == nc
    # the pending trial completes after the restore: recorded once, never proposed again
    b.on_trial_complete("t5", result(json_cfg(state, "t5")))
    assert len(b.observations) == 5
    used = {c["arch_id"] for c in [nb]} | {SPACE.arch_id(SPACE.from_vector(g)) for g in state["used"]}
    more = [b.suggest(f"m{i}") for i in range(1)]
    assert all(m["arch_id"] not in used for m in more)


def json_cfg(state: dict, trial_id: str) -> dict:
    return SPACE.to_config(SPACE.from_vector(state["pending"][trial_id]))


@pytest.mark.parametrize("name", [n for n in SEARCHERS if n.startswith("optuna-")])
def test_optuna_state_is_plain_json_and_replays(name, tmp_path):
    a = build(name)
    cfgs = advance(a, 5)
    path = tmp_path / "state.json"
    a.save(path)
    state = json.loads(path.read_text())
    assert state["format"] == "hytnas-optuna-state" and len(state["trials"]) >= 5
    b = build(name, seed=1)
    b.restore(path)
    assert len(b._ot_study.get_trials()) == len(a._ot_study.get_trials())
    b.on_trial_complete("t4", result(cfgs[-1]))  # the pending trial finishes after the restore
    assert b.suggest("n") is not None


@pytest.mark.parametrize(
    "mutate, match",
    [
        (lambda s: s.update(version=99), "version 99 is not supported"),
        (lambda s: s.update(space_id="000000000000"), "restore with the same space"),
        (lambda s: s.update(objectives=[["val_accuracy", "max", "reported"]]), "saved for objectives"),
        (lambda s: s.update(searcher="random"), "saved by the 'random' searcher"),
        (lambda s: s.pop("observations"), "malformed"),
    ],
)
def test_bad_state_is_one_line(mutate, match, tmp_path):
    a = build("mobo")
    advance(a, 3)
    state = a.get_state()
    mutate(state)
    path = tmp_path / "s.json"
    path.write_text(json.dumps(state))
    with pytest.raises(SearchError, match=match) as info:
        build("mobo").restore(path)
    assert "\n" not in str(info.value)


def test_unreadable_state_file(tmp_path):
    path = tmp_path / "s.json"
    path.write_text("{not json")
    with pytest.raises(SearchError, match="not valid JSON"):
        build("random").restore(path)
