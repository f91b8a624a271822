"""The Tune adapter's write-ahead record (``state_path``): written before a trial's config is handed
out and after each completion; the fresher of it and Tune's snapshot is restored; archs of trials
the restored Tune experiment forgot are handed out again first; a completion is told once. And
``hytnas status`` on a folder that holds no search."""
from __future__ import annotations

import json

from hytnas.cli import main
from hytnas.space import get_space
from hytnas.trial import RETRY_OF_KEY, newest_checkpoint, prune_checkpoints, retry_of
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
    assert state["trials"]["t0"]["genes"] == SPACE.to_vector(SPACE.from_config(cfg))
    s.on_trial_complete("t0", final(cfg))
    state = json.loads(rec.read_text())
    assert state["seq"] == 2 and state["trials"] == {} and list(state["told"]) == ["t0"]


def test_fresher_record_wins_and_lost_trials_are_retried_not_reproposed(tmp_path):
    rec = tmp_path / "searcher.json"
    s = build(rec)
    c0 = s.suggest("t0")
    s.save(tmp_path / "tune-snapshot.json")  # Tune's snapshot: knows t0 only
    c1, c2 = s.suggest("t1"), s.suggest("t2")  # started after the snapshot, then the driver dies
    r = build(rec)
    r.restore(tmp_path / "tune-snapshot.json")
    assert set(r.record.trials) == {"t0", "t1", "t2"}  # the record is fresher
    assert r.reconcile(["t0"]) == ["t1", "t2"]
    asked = len(r.core.state_dict()["used"])
    # retries, in order, before any new proposal; their configs name the lost trial ids
    assert r.suggest("n1") == {**c1, RETRY_OF_KEY: "t1"} and r.suggest("n2") == {**c2, RETRY_OF_KEY: "t2"}
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
    assert set(r.record.trials) == {"t0"} and not r.restore_record()


def test_a_finished_trial_tune_forgot_is_continued_not_told_again(tmp_path):
    rec = tmp_path / "searcher.json"
    s = build(rec)
    s.save(tmp_path / "tune-snapshot.json")  # Tune's snapshot: no trial yet
    c0 = s.suggest("t0")
    s.on_trial_complete("t0", final(c0))  # finished after the snapshot; the driver dies
    r = build(rec)
    r.restore(tmp_path / "tune-snapshot.json")
    assert r.reconcile([]) == ["t0"]
    n0 = r.suggest("n0")
    assert n0 == {**c0, RETRY_OF_KEY: "t0"} and retry_of(n0) == ["t0"]
    r.suggest("n1")  # a new proposal next
    r.save(tmp_path / "tune-snapshot-2.json")  # knows n0, n1
    r.on_trial_complete("n0", final(n0))
    assert len(r.core.observations) == 1  # told once
    again = build(rec)  # killed once more: the continuation n0 finished after the snapshot too
    again.restore(tmp_path / "tune-snapshot-2.json")
    assert again.reconcile(["n1"]) == ["n0"]
    assert retry_of(again.suggest("n2")) == ["n0", "t0"]
    again.on_trial_complete("n2", final(n0))
    assert len(again.core.observations) == 1 and set(again.record.told) == {"n2"}


def test_status_of_a_folder_without_a_search(tmp_path, capsys):
    assert main(["status", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not a hytnas experiment folder" in err[0]


def test_prune_checkpoints_keeps_the_latest(tmp_path):
    for i in range(3):
        (tmp_path / f"checkpoint_00000{i}").mkdir()
        (tmp_path / f"checkpoint_00000{i}" / "model.pt").write_text("x")
    (tmp_path / "result.json").write_text("{}")
    gone = prune_checkpoints(tmp_path, tmp_path / "checkpoint_000002")
    assert [p.name for p in gone] == ["checkpoint_000000", "checkpoint_000001"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint_000002", "result.json"]


def test_newest_checkpoint_of_the_earlier_trials(tmp_path):
    assert newest_checkpoint(tmp_path, ["a", "b"]) is None
    for tid, n in (("b", 1), ("b", 2)):
        folder = tmp_path / f"trial_{tid}" / f"checkpoint_00000{n}"
        folder.mkdir(parents=True)
        (folder / "lightning.ckpt").write_text("x")
        (folder / "model.pt").write_text("x")
        if n == 1:
            (folder / "trial.json").write_text('{"format": "hytnas-trial", "version": 1}')
    (tmp_path / "trial_a").mkdir()  # the newest attempt started and saved nothing
    # checkpoint_000002 has no trial state (torn): the complete one before it
    assert newest_checkpoint(tmp_path, ["a", "b"]) == tmp_path / "trial_b" / "checkpoint_000001"
