"""benchmarks/build_table_gpu.py: the schedule, the trial order, the epoch choice, resuming, and a
tiny CPU run through train + finalize into a table the benchmark tools read."""
from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from hytnas.benchmark.archlist import build_items
from hytnas.benchmark.table import BenchmarkTable, read_header

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "build_table_gpu.py"


@pytest.fixture(scope="module")
def btg():
    spec = importlib.util.spec_from_file_location("build_table_gpu", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["build_table_gpu"] = mod  # dataclasses resolve their module by name
    spec.loader.exec_module(mod)
    return mod


def _schedule(btg, **kw):
    base = dict(epochs=4, batch_size=100, lr=0.01, weight_decay=0.05, warmup_epochs=0.5, train_size=1000,
                val_size=200, test_size=200)
    return btg.Schedule(**{**base, **kw})


def test_lr_warms_up_linearly_then_decays_to_zero(btg):
    s = _schedule(btg)  # 10 steps per epoch, 40 steps, 5 warm-up steps
    lrs = [s.lr_at(i) for i in range(40)]
    assert lrs[:5] == pytest.approx([0.002, 0.004, 0.006, 0.008, 0.010])
    assert max(lrs) == pytest.approx(0.01)
    assert all(a >= b for a, b in zip(lrs[5:], lrs[6:]))  # cosine: non-increasing after the warm-up
    assert lrs[-1] < 0.0002


def test_trial_order_is_v1s_list_with_replicates_early(btg):
    s = _schedule(btg, n_archs=12, replicate=3, seeds=3)
    space = btg._space()
    order = btg.trial_list(space, s)
    items = build_items(space, 12, seed=0, replicate=3, seeds=3)
    assert sorted(order, key=items.index) == items  # the same trials
    assert [i.replicate for i in order] == [0, 0, 0, 1, 1, 1, 2, 2, 2] + [0] * 9
    assert {i.arch for i in order[3:9]} == {i.arch for i in order[:3]}


def test_table_rows_are_the_finished_primaries_in_list_order(btg):
    s = _schedule(btg, n_archs=12, replicate=3, seeds=3)
    space = btg._space()
    order = btg.trial_list(space, s)
    done = list(reversed(order[1:]))  # finished in another order; the first primary is missing
    expected = [i for i in build_items(space, 12, seed=0, replicate=3, seeds=3) if i.replicate == 0][1:]
    assert btg.table_rows(order, done) == expected


@pytest.mark.parametrize("rate,budget,expected", [(100.0, 1e9, 40), (1.0, 1.0, 1), (1000.0, 300.0, 6)])
def test_choose_epochs_fits_the_budget(btg, rate, budget, expected):
    s = _schedule(btg, train_size=50000, batch_size=512)  # 97 steps per epoch
    e = btg.choose_epochs(rate, 340, s, budget)
    assert e == expected
    if e > btg.EPOCH_MENU[0]:  # it fits, and the next longer schedule of the menu does not
        assert 1.25 * 340 * e * 97 / rate <= budget
    longer = [m for m in btg.EPOCH_MENU if m > e]
    assert not longer or 1.25 * 340 * longer[0] * 97 / rate > budget


def test_read_jsonl_skips_a_torn_last_line(btg, tmp_path):
    p = tmp_path / "rows.jsonl"
    btg.append_jsonl(p, {"key": "a"})
    btg.append_jsonl(p, {"key": "b"})
    with open(p, "a") as fh:
        fh.write('{"key": "c", "val')  # killed mid-write
    assert [r["key"] for r in btg.read_jsonl(p)] == ["a", "b"]
    btg.append_jsonl(p, {"key": "d"})  # the next writer starts a new line: only the torn one is lost
    assert [r["key"] for r in btg.read_jsonl(p)] == ["a", "b", "d"]


@pytest.mark.parametrize("state, stale", [
    ({}, False),  # nothing timed yet
    ({"a": {"rounds": 1}, "b": {"rounds": 1}}, False),  # interrupted in the second pass
    ({"a": {"rounds": 3}, "b": {"rounds": 2}, "c": {"rounds": 2}}, False),  # interrupted in the third pass
    ({"a": {"rounds": 1}}, False),  # interrupted in the first pass
    ({"a": {"rounds": 3}, "b": {"rounds": 3}}, True),  # finished before c was trained: time all again
])
def test_latency_of_a_grown_table_is_timed_again_in_one_run(btg, state, stale):
    assert btg.stale_latency(state, ["a", "b", "c"], rounds=3) is stale


def _run(*args, cwd=ROOT):
    return subprocess.run([sys.executable, str(SCRIPT), *args], cwd=cwd, capture_output=True, text=True, timeout=600)


def test_latency_cost_fit_grows_with_timing_noise(btg):
    g = torch.Generator().manual_seed(0)
    n = 60
    macs, params, peak = (torch.rand(n, generator=g, dtype=torch.float64) * 50 + 1 for _ in range(3))
    costs = [{"macs_m": float(m), "params_k": float(p), "peak_sram_kb": float(k)} for m, p, k in zip(macs, params, peak)]
    exact = (0.1 * macs ** 0.8 * params ** 0.1).tolist()  # a pure power law of the costs
    sd, r2 = btg.latency_cost_fit(exact, costs)
    assert sd < 1e-9 and r2 > 1 - 1e-9
    noisy = (torch.tensor(exact) * torch.exp(0.2 * torch.randn(n, generator=g, dtype=torch.float64))).tolist()
    sd, r2 = btg.latency_cost_fit(noisy, costs)
    assert 0.12 < sd < 0.25 and r2 < 1


def test_finalize_without_a_train_folder_is_one_line(tmp_path):
    r = _run("finalize", "--raw", str(tmp_path), "--table", str(tmp_path / "t.csv"))
    assert r.returncode != 0
    assert r.stderr.strip().splitlines() == [f"build_table_gpu: --raw {tmp_path}: no schedule.json; point it at a train --out folder"]
    assert not (tmp_path / "t.csv").exists()


@pytest.mark.e2e  # real data, worker processes, host timing: ~30 s
def test_cpu_train_resume_and_finalize(btg, fmnist_tiny, tmp_path):
    out = tmp_path / "raw"
    common = ["train", "--root", str(fmnist_tiny), "--out", str(out), "--device", "cpu", "--workers", "1",
              "--epochs", "2", "--train-size", "256", "--val-size", "128", "--test-size", "128", "--batch-size", "64"]
    r = _run(*common, "--limit", "1")
    assert r.returncode == 0, r.stderr
    rows = btg.read_jsonl(out / "rows.jsonl")
    assert len(rows) == 1 and rows[0]["seed"] == 0 and not rows[0]["graphed"]
    assert 0.0 <= rows[0]["val_accuracy"] <= 1.0 and rows[0]["val_accuracy_e2"] == rows[0]["val_accuracy"]
    # a second call trains the next trial only; another schedule in the same folder is refused
    r = _run(*common, "--limit", "1")
    assert r.returncode == 0, r.stderr
    assert [x["key"] for x in btg.read_jsonl(out / "rows.jsonl")][0] == rows[0]["key"]
    assert len(btg.read_jsonl(out / "rows.jsonl")) == 2
    bad = _run(*[("128" if a == "64" else a) for a in common], "--limit", "1")
    assert bad.returncode != 0 and "batch_size" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
    assert len(btg.read_jsonl(out / "rows.jsonl")) == 2
    schedule = json.loads((out / "schedule.json").read_text())["schedule"]
    assert schedule["epochs"] == 2 and schedule["batch_size"] == 64

    table = tmp_path / "v2.csv.gz"
    r = _run("finalize", "--raw", str(out), "--table", str(table), "--latency-rounds", "2", "--latency-runs", "2",
             "--latency-warmup", "0")
    assert r.returncode == 0, r.stderr
    t = BenchmarkTable.load(table)  # every required column present and finite
    assert len(t) == 2 and t.epoch_columns == ["val_accuracy_e1", "val_accuracy_e2"]
    head = read_header(table)
    assert head["complete"] == "False" and json.loads(head["schedule"]) == schedule
    assert all(math.isfinite(x) and x > 0 for x in t.frame["latency_ms"])
    assert json.loads((out / "latency.json").read_text())[t.frame["arch_id"][0]]["rounds"] == 2
