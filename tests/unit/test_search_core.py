"""The search core is Ray-free: with ``ray`` unimportable, ``mobo``, ``random`` and ``optuna-nsga2``
run a 20-step ask/tell loop on a toy problem, saving and restoring their state midway."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

LOOP = textwrap.dedent('''
    import json, sys
    sys.modules["ray"] = None  # any "import ray" below raises ImportError
    from hytnas.space import get_space
    from search_algos import make_searcher

    name, state_file = sys.argv[1], sys.argv[2]
    space = get_space("hytnas-tiny")
    options = {"n_initial": 4, "num_random": 32, "num_mutations": 16, "local_search_starts": 1,
               "local_search_steps": 1, "mc_samples": 16, "torch_threads": 1} if name == "mobo" else {}

    def build():
        return make_searcher(name, space=space, objectives=["val_accuracy", "params_k"], seed=0, options=options)

    def acc(arch):
        x = space.encode(arch)[0]
        return float(1 - (x - 0.6).pow(2).mean())

    s, seen = build(), []
    for step in range(20):
        if step == 10:  # save midway, continue in a fresh searcher from the file
            s.save(state_file)
            s = build()
            s.restore(state_file)
        (arch,) = s.ask(1)
        seen.append(space.arch_id(arch))
        if step == 3:
            s.tell_failed(arch, "toy failure")
        else:
            s.tell(arch, {"val_accuracy": acc(arch)})
    print(json.dumps({"ids": seen, "ray_loaded": "ray" in sys.modules and sys.modules["ray"] is not None}))
''')


@pytest.mark.parametrize("name", ["mobo", "random", "optuna-nsga2"])
def test_ask_tell_loop_without_ray(name, tmp_path):
    state = tmp_path / "state.json"
    out = subprocess.run([sys.executable, "-c", LOOP, name, str(state)], cwd=ROOT, capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert len(got["ids"]) == 20 and not got["ray_loaded"]
    saved = json.loads(state.read_text())
    assert saved["version"] >= 1 and saved["searcher"] == name
    if name != "optuna-nsga2":  # Optuna may propose an arch twice (re-evaluated); ours never do
        assert len(set(got["ids"])) == 20


def test_importing_the_core_imports_no_ray():
    code = ("import sys; import search_algos, search_algos.mobo.core, search_algos.optuna_search, "
            "search_algos.random_search, search_algos.mobo.searcher; print('ray' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "False"
