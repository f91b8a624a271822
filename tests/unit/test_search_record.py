"""The Tune adapter's write-ahead record (``state_path``): written before a trial's config is handed
out and after each completion; the fresher of it and Tune's snapshot is restored; archs of trials
the restored Tune experiment forgot are handed out again first; a completion is told once. And
``hytnas status`` on a folder that holds no search."""
from __future__ import annotations

import json

from hytnas.cli import main
from hytnas.space import get_space
from search_algos.tune import make_search_alg

SPACE = get_space("hytnas-tiny")


def build(path=None):
    return make_search_alg("random", space=SPACE, objectives=["val_accuracy", "params_k"], seed=0,
                           max_concurrent=3, state_path=path)


def final(cfg) -> dict:
    return {"val_accuracy": 0.5, "done": True, "config": cfg}


def test_record_is_written_before_the_config_is_handed_out(tmp_path):
    rec = tmp_path / "searcher.json"
    s = build(rec)
    cfg = s.suggest("t0")
    state = json.loads(rec.read_text())
    assert state["seq"] == 1 and list(state["trials"]) == ["t0"]
    assert state["trials"]["t0"] == SPACE.to_vector(SPACE.from_config(cfg))
    s.on_trial_complete("t0", final(cfg))
    state = json.loads(rec.read_text())
    assert state["seq"] == 2 and state["trials"] == {} and state["told"] == ["t0"]


def test_fresher_record_wins_and_lost_trials_are_retried_not_reproposed(tmp_path):
    rec = tmp_path / "searcher.json"
    s = build(rec)
    c0 = s.suggest("t0")
    s.save(tmp_path / "tune-snapshot.json")  # Tune's snapshot: knows t0 only
    c1, c2 = s.suggest("t1"), s.suggest("t2")  # started after the snapshot, then the driver dies
    r = build(rec)
    r.restore(tmp_path / "tune-snapshot.json")
    assert set(r.trials) == {"t0", "t1", "t2"}  # the record is fresher
    assert r.reconcile(["t0"]) == ["t1", "t2"]
    asked = len(r.core.state_dict()["used"])
    assert r.suggest("n1") == c1 and r.suggest("n2") == c2  # retries, in order, before any new proposal
    assert len(r.core.state_dict()["used"]) == asked
    n3 = r.suggest("n3")
    assert n3 is None  # t0, n1, n2 out: the limit of 3
    for tid, cfg in (("t0", c0), ("n1", c1), ("n2", c2)):
        r.on_trial_complete(tid, final(cfg))
    assert len(r.core.observations) == 3
    assert r.suggest("n4")["arch_id"] not in {c0["arch_id"], c1["arch_id"], c2["arch_id"]}


def test_a_completion_is_told_once(tmp_path):
    rec = tmp_path / "searcher.json"
    s = build(rec)
    c0 = s.suggest("t0")
    s.save(tmp_path / "tune-snapshot.json")  # Tune's snapshot: t0 running
    s.on_trial_complete("t0", final(c0))  # recorded; the driver dies before the next snapshot
    r = build(rec)
    r.restore(tmp_path / "tune-snapshot.json")
    assert r.reconcile(["t0"]) == []
    r.on_trial_complete("t0", final(c0))  # Tune ran t0 again from its snapshot
    assert len(r.core.observations) == 1


def test_no_record_keeps_tunes_snapshot(tmp_path):
    s = build()
    s.suggest("t0")
    s.save(tmp_path / "snap.json")
    r = build()
    r.restore(tmp_path / "snap.json")
    assert set(r.trials) == {"t0"} and not r.restore_record()


def test_status_of_a_folder_without_a_search(tmp_path, capsys):
    assert main(["status", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not a hytnas experiment folder" in err[0]
