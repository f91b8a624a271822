"""The MOBO searcher end to end on real Ray Tune and real BoTorch, with a cheap user function
trainable (no Lightning): 30 trials, 2 at a time, no duplicates, a better hypervolume than random
search with the same seed and budget; then a search interrupted and resumed with
``tune.Tuner.restore`` that continues without repeating an arch."""
from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

import pytest
import torch
from ray import cloudpickle, tune
from ray.tune import Callback

from hytnas.mo import hypervolume
from hytnas.objectives import get_objectives
from hytnas.space import get_space
from search_algos import make_searcher
from search_algos.tune import make_search_alg

pytestmark = pytest.mark.e2e
cloudpickle.register_pickle_by_value(sys.modules[__name__])  # Ray's workers cannot import test modules

SPACE = get_space("hytnas-tiny")
# two archs at opposite corners of the encoding: the front is the set of trade-offs between them
A = SPACE.encode(SPACE.from_latent({g: v[0] for g, v in SPACE.latent_choices().items()}))[0]
B = SPACE.encode(SPACE.from_latent({g: v[-1] for g, v in SPACE.latent_choices().items()}))[0]
OBJECTIVES = get_objectives([{"name": "dist_a", "sense": "min"}, {"name": "dist_b", "sense": "min"}])
MOBO = {"n_initial": 8, "num_random": 128, "num_mutations": 128, "mc_samples": 32, "torch_threads": 1}


def objectives_of(config: dict) -> dict:
    """Distances (mean squared, in [0, 1]) of the arch's encoding to the corner archs A and B."""
    x = SPACE.encode(SPACE.from_config(config))[0]
    return {"dist_a": float((x - A).pow(2).mean()), "dist_b": float((x - B).pow(2).mean()), "arch_id": config["arch_id"]}


def trainable(config: dict) -> None:
    time.sleep(float(config.get("sleep", 0.0)))
    tune.report(objectives_of(config))


def random_search(samples: int, seed: int) -> list[dict]:
    """Random search needs no Ray to be compared: its proposals do not depend on results."""
    s = make_searcher("random", space=SPACE, objectives=OBJECTIVES, seed=seed)
    out = []
    for _ in range(samples):
        (arch,) = s.ask(1)
        r = objectives_of(SPACE.to_config(arch) | {"arch_id": SPACE.arch_id(arch)})
        s.tell(arch, r)
        out.append(r)
    return out


def run(name: str, tmp_path: Path, samples: int, seed: int = 0, **opts) -> list[dict]:
    searcher = make_search_alg(name, space=SPACE, objectives=OBJECTIVES, seed=seed, max_concurrent=2, options=opts)
    tuner = tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(search_alg=searcher, num_samples=samples, max_concurrent_trials=2,
                                    reuse_actors=True),
        run_config=tune.RunConfig(name=name, storage_path=str(tmp_path), verbose=0),
    )
    grid = tuner.fit()
    assert not grid.errors
    return [r.metrics for r in grid]


def hv(results: list[dict]) -> float:
    Y = torch.tensor([[r["dist_a"], r["dist_b"]] for r in results], dtype=torch.float64)
    return hypervolume(Y, OBJECTIVES, ref_point=torch.tensor([-1.0, -1.0], dtype=torch.float64))


def test_mobo_beats_random_with_the_same_budget_and_never_repeats(tmp_path, ray_local):
    mobo = run("mobo", tmp_path, 30, **MOBO)
    rand = random_search(30, seed=0)
    ids = [r["arch_id"] for r in mobo]
    assert len(ids) == 30 and len(set(ids)) == 30
    assert all(r["done"] for r in mobo)
    assert hv(mobo) > hv(rand) + 0.01, (hv(mobo), hv(rand))
    # the searcher state Tune saved in the experiment folder is our plain JSON dict
    (state_file,) = (tmp_path / "mobo").glob("searcher-state-*.pkl")
    state = json.loads(state_file.read_text())
    assert state["format"] == "hytnas-tune-searcher" and state["searcher"]["format"] == "hytnas-searcher-state"
    assert len(state["searcher"]["observations"]) == 30 and not state["trials"]


class StopAfter(Callback):
    """SIGUSR1 (Tune's graceful stop) once ``n`` trials completed; the flag lives in a file because
    Tune stores callbacks with the experiment and reuses them on restore."""

    def __init__(self, n: int, flag: Path) -> None:
        self.n, self.flag = n, flag

    def on_trial_complete(self, iteration, trials, trial, **info):
        if sum(t.status == "TERMINATED" for t in trials) + 1 >= self.n and not self.flag.exists():
            self.flag.write_text(trial.trial_id)
            os.kill(os.getpid(), signal.SIGUSR1)


def test_tuner_restore_continues_without_repeats(tmp_path, ray_local):
    searcher = make_search_alg("mobo", space=SPACE, objectives=OBJECTIVES, seed=1, max_concurrent=2,
                               options={**MOBO, "n_initial": 4, "num_random": 32, "num_mutations": 16, "mc_samples": 16,
                                        "local_search_steps": 1})
    flag = tmp_path / "stopped.flag"
    tuner = tune.Tuner(
        trainable,
        param_space={"sleep": 0.5},
        tune_config=tune.TuneConfig(search_alg=searcher, num_samples=8, max_concurrent_trials=2, reuse_actors=True),
        run_config=tune.RunConfig(name="resume", storage_path=str(tmp_path), verbose=0,
                                  callbacks=[StopAfter(4, flag)]),
    )
    first = tuner.fit()
    done_first = [r for r in first if r.metrics.get("done")]
    assert flag.exists() and 4 <= len(done_first) < 8
    restored = tune.Tuner.restore(str(tmp_path / "resume"), trainable=trainable, resume_errored=True,
                                  resume_unfinished=True)
    grid = restored.fit()
    results = [r.metrics for r in grid]
    ids = [r["arch_id"] for r in results if r.get("done")]
    assert len(results) == 8 and len(ids) == 8 and len(set(ids)) == 8
