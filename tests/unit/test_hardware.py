"""Device profiles, unit decomposition, analytic MCU estimate, profiler (resume) and `hytnas profile`."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from hytnas.cli import main
from hytnas.costs import arch_costs
from hytnas.devices import latency_fn, latency_objective
from hytnas.errors import HardwareError
from hytnas.hardware import (
    LatencyTable,
    ProfileSettings,
    arch_blocks,
    get_profile,
    list_profiles,
    memory_constraints,
    profile_from_dict,
    run_profile,
    space_block_specs,
)
from hytnas.hardware import profiler as profiler_mod
from hytnas.hardware.analytic import unit_cost, unit_latency_estimate_ms
from hytnas.hardware.blocks import BlockSpec
from hytnas.space import builtin_spaces, get_space
from hytnas.table import read_arch_table

#: a space small enough to enumerate and profile in seconds (32 px, 50 distinct units)
MICRO = {
    "name": "micro", "input_size": 32, "stem_channels": 8, "head_mult": 2, "head_max_channels": 64,
    "choices": {"n": [1], "t": [1], "e": [1, 2], "h": [1, 2], "f": [1], "p": [2]},
    "width": {"c1": [8], "multipliers": [1, 2], "caps": [None, None, 16, 32, 32]},
}
FAST = dict(runs=2, warmup=0, warmup_s=0.0, validate_runs=2, validate_warmup=0)


@pytest.fixture(scope="module")
def micro_yaml(tmp_path_factory) -> Path:
    p = tmp_path_factory.mktemp("space") / "micro.yaml"
    p.write_text(yaml.safe_dump(MICRO))
    return p


@pytest.fixture(scope="module")
def micro():
    return get_space(MICRO)


def all_archs(space):
    return space.sample(space.cardinality(), seed=0)


# ------------------------------------------------------------------------------ profiles
@pytest.mark.parametrize("name", list_profiles())
def test_shipped_profiles_load(name):
    p = get_profile(name)
    assert p.name == name and p.source and Path(p.source).is_file()
    assert latency_objective(p).source == ("reported" if p.latency.method == "measured" else "known")


def test_shipped_set():
    assert {"host-cpu", "raspberry-pi-4", "jetson-nano", "stm32f746"} <= set(list_profiles())
    assert get_profile("host-cpu").latency.method == "measured"
    assert get_profile("raspberry-pi-4").latency.method == "lut"
    assert get_profile("jetson-nano").latency.method == "learned"
    mcu = get_profile("stm32f746")
    assert (mcu.kind, mcu.memory.sram_kb, mcu.memory.flash_kb, mcu.latency.method) == ("mcu", 320, 1024, "analytic")
    assert mcu.latency.calibrated is False
    assert "uncalibrated" in latency_objective(mcu).description


def test_memory_constraints_exact():
    cons = {c.name: c for c in memory_constraints(get_profile("stm32f746"))}
    assert set(cons) == {"peak_sram_kb", "model_size_kb"}
    assert (cons["peak_sram_kb"].op, cons["peak_sram_kb"].value) == ("<=", 320.0)
    assert (cons["model_size_kb"].op, cons["model_size_kb"].value) == ("<=", 1024.0)
    base = get_profile("stm32f746").model_dump(exclude={"source"})
    base["memory"] = {"sram_kb": 320, "flash_kb": 1024, "sram_reserved_kb": 64, "flash_reserved_kb": 100}
    cons = {c.name: c.value for c in memory_constraints(profile_from_dict(base))}
    assert cons == {"peak_sram_kb": 256.0, "model_size_kb": 924.0}
    assert memory_constraints(get_profile("host-cpu")) == ()


def _good() -> dict:
    return {"name": "dev", "kind": "cpu", "latency": {"method": "lut", "path": None}}


@pytest.mark.parametrize("patch, field", [
    ({"colour": "red"}, "field colour"),
    ({"kind": "tpu"}, "field kind"),
    ({"name": "bad name!"}, "field name"),
    ({"latency": {"method": "guess"}}, "field latency.method"),
    ({"latency": {"method": "lut", "pathh": "x"}}, "field latency.pathh"),
    ({"memory": {"sram_kb": -5}}, "field memory.sram_kb"),
    ({"memory": {"sram_kb": 100, "sram_reserved_kb": 200}}, "field memory"),
    ({"input_size": 4}, "field input_size"),
    ({"latency": {"method": "analytic", "clock_mhz": 100, "bytes_per_cycle": 1,
                  "macs_per_cycle": {"conv": 1, "dwconv": 1, "linear": 1}}}, "field latency"),
])
def test_profile_errors_name_the_field(patch, field):
    with pytest.raises(HardwareError) as exc:
        profile_from_dict({**_good(), **patch})
    msg = str(exc.value)
    assert field in msg and "\n" not in msg


def test_profile_yaml_file_errors(tmp_path):
    bad = tmp_path / "dev.yaml"
    bad.write_text("name: dev\nkind: cpu\nlatency: {method: measured, runs: 0}\n")
    with pytest.raises(HardwareError, match=r"dev.yaml: field latency.runs"):
        get_profile(str(bad))
    (tmp_path / "broken.yaml").write_text("name: [unclosed\n")
    with pytest.raises(HardwareError, match="not valid YAML"):
        get_profile(str(tmp_path / "broken.yaml"))
    with pytest.raises(HardwareError, match="unknown device 'nope'.*host-cpu"):
        get_profile("nope")


@pytest.mark.parametrize("name, what", [("raspberry-pi-4", "hytnas profile"), ("jetson-nano", "hytnas predictor fit")])
def test_profile_without_its_file_says_how_to_make_it(name, what, micro):
    with pytest.raises(HardwareError) as exc:
        latency_fn(name, micro)
    msg = str(exc.value)
    assert "latency.path is not set" in msg and what in msg and "\n" not in msg


def test_measured_profile_has_no_latency_fn(micro):
    with pytest.raises(HardwareError, match="measured in each trial"):
        latency_fn("host-cpu", micro)


# ------------------------------------------------------------------------------ units
@pytest.mark.parametrize("space_name", builtin_spaces())
def test_units_add_up_to_the_cost_model(space_name):
    space = get_space(space_name)
    for a in space.sample(10, seed=1):
        cfg = space.to_arch_cfg(a)
        costs = arch_costs(cfg, space.input_size, 10)
        units = [unit_cost(s) for s in arch_blocks(cfg, space.input_size, 10)]
        assert sum(u.macs for u in units) == costs["macs"]
        assert sum(u.params for u in units) == costs["params"]
        assert max(u.peak_elems for u in units) == costs["peak_sram_bytes"]
        for u in units:
            assert sum(u.by_class().values()) == u.macs


def test_space_units_are_exactly_the_units_of_its_archs(micro):
    enumerated = space_block_specs(micro)
    from_archs = {s.key for a in all_archs(micro) for s in arch_blocks(micro.to_arch_cfg(a), 32, 10)}
    assert set(enumerated) == from_archs
    for key in enumerated:
        assert BlockSpec.from_key(key).key == key


def test_units_build_with_the_shapes_they_claim(micro):
    for spec in space_block_specs(micro).values():
        out = spec.build()(torch.randn(1, spec.in_chs, spec.res, spec.res))
        expected = (1, 10) if spec.kind == "head" else (1, spec.out_chs, spec.out_res, spec.out_res)
        assert tuple(out.shape) == expected, spec.key


def test_analytic_estimate_sums_units_and_scales_with_clock():
    space = get_space("hytnas-tiny")
    archs = space.sample(6, seed=3)
    prof = get_profile("stm32f746")
    fn = latency_fn(prof, space)
    ms = fn(archs)
    assert ms.dtype == torch.float64 and ms.shape == (6,) and bool((ms > prof.latency.overhead_ms).all())
    manual = [prof.latency.overhead_ms + sum(unit_latency_estimate_ms(unit_cost(s), prof.latency)
                                             for s in arch_blocks(space.to_arch_cfg(a), 96, 10)) for a in archs]
    assert torch.allclose(ms, torch.tensor(manual, dtype=torch.float64))
    fast = prof.model_copy(update={"latency": prof.latency.model_copy(update={"clock_mhz": 2 * prof.latency.clock_mhz})})
    ms2 = latency_fn(fast, space)(archs)
    assert torch.allclose(ms2 - prof.latency.overhead_ms, (ms - prof.latency.overhead_ms) / 2)
    macs = torch.tensor([arch_costs(space.to_arch_cfg(a), 96, 10)["macs"] for a in archs], dtype=torch.float64)
    assert torch.corrcoef(torch.stack([macs, ms]))[0, 1] > 0.8


# ------------------------------------------------------------------------------ profiler
def test_profile_writes_files_and_resumes(tmp_path, micro):
    settings = ProfileSettings(input_size=32, n_validate=5, **FAST)
    out = tmp_path / "prof"
    res = run_profile(micro, out, settings, device_name="test")
    units = space_block_specs(micro)
    lut = LatencyTable.load(out)
    assert lut.complete and set(lut.entries) == set(units) and res.n_units_timed_now == len(units)
    assert all(e["median_ms"] > 0 and e["runs"] == 2 for e in lut.entries.values())
    archs, df = read_arch_table(out / "validation.csv", micro, metrics=("latency_ms", "latency_iqr_ms"))
    assert len(archs) == 5 and bool((df["latency_ms"] > 0).all())
    assert lut.meta["space_id"] == micro.space_id and lut.meta["threads"] == 1

    # drop 4 units and 2 archs: a rerun times exactly those
    d = json.loads((out / "lut.json").read_text())
    dropped = sorted(d["entries"])[:4]
    for k in dropped:
        del d["entries"][k]
    d["complete"] = False
    (out / "lut.json").write_text(json.dumps(d))
    lines = (out / "validation.csv").read_text().splitlines()
    (out / "validation.csv").write_text("\n".join(lines[:-2]) + "\n")
    kept = {k: v for k, v in lut.entries.items() if k not in dropped}
    res2 = run_profile(micro, out, settings, device_name="test")
    assert (res2.n_units_timed_now, res2.n_validate_timed_now) == (4, 2)
    lut2 = LatencyTable.load(out)
    assert lut2.complete and set(lut2.entries) == set(units)
    assert all(lut2.entries[k] == v for k, v in kept.items())  # old timings untouched
    assert len(read_arch_table(out / "validation.csv", micro)[0]) == 5


def _interrupt_profile(space, out, settings, monkeypatch, after: int) -> None:
    """Run ``run_profile`` and stop it (KeyboardInterrupt) at the ``after + 1``-th timing; then
    restore the real timer."""
    real, calls = profiler_mod.time_module, {"n": 0}

    def flaky(*args, **kwargs):
        if calls["n"] == after:
            raise KeyboardInterrupt
        calls["n"] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(profiler_mod, "time_module", flaky)
    with pytest.raises(KeyboardInterrupt):
        run_profile(space, out, settings)
    monkeypatch.setattr(profiler_mod, "time_module", real)


def test_profile_interrupted_keeps_progress(tmp_path, micro, monkeypatch):
    settings = ProfileSettings(input_size=32, n_validate=2, **FAST)
    _interrupt_profile(micro, tmp_path, settings, monkeypatch, after=7)
    lut = LatencyTable.load(tmp_path)
    assert len(lut) == 7 and not lut.complete
    res = run_profile(micro, tmp_path, settings)
    assert res.n_units_timed_now == res.n_units - 7 and LatencyTable.load(tmp_path).complete


def test_profile_interrupted_before_any_arch_is_timed_continues(tmp_path, micro, monkeypatch):
    """A stop at the first end-to-end timing leaves no validation file that a continuation refuses."""
    settings = ProfileSettings(input_size=32, n_validate=2, **FAST)
    n_units = len(profiler_mod.units_to_profile(micro, settings))
    _interrupt_profile(micro, tmp_path, settings, monkeypatch, after=n_units)
    res = run_profile(micro, tmp_path, settings)
    assert res.n_units_timed_now == 0 and res.n_validate_timed_now == 2


def test_fold_round_keeps_the_fastest_run_and_the_fastest_round():
    r1 = {"median_ms": 2.0, "min_ms": 1.5, "iqr_ms": 0.4, "p25_ms": 1.8, "p75_ms": 2.2, "runs": 10}
    r2 = {"median_ms": 1.8, "min_ms": 1.6, "iqr_ms": 0.1, "p25_ms": 1.75, "p75_ms": 1.85, "runs": 10}
    r3 = {"median_ms": 3.0, "min_ms": 1.2, "iqr_ms": 1.0, "p25_ms": 2.5, "p75_ms": 3.5, "runs": 5}
    e = profiler_mod.fold_round(None, r1)
    assert e == {**r1, "rounds": 1}
    e = profiler_mod.fold_round(e, r2)  # lower median: its median and quartiles; the fastest run overall
    assert e == {"median_ms": 1.8, "iqr_ms": 0.1, "p25_ms": 1.75, "p75_ms": 1.85, "min_ms": 1.5, "runs": 20, "rounds": 2}
    e = profiler_mod.fold_round(e, r3)  # slower round: only its fastest run counts
    assert (e["median_ms"], e["iqr_ms"], e["min_ms"], e["runs"], e["rounds"]) == (1.8, 0.1, 1.2, 25, 3)
    old = {k: v for k, v in r1.items()}  # written before rounds existed: one round
    assert profiler_mod.rounds_of(old) == 1 and profiler_mod.fold_round(old, r2)["rounds"] == 2
    with pytest.raises(HardwareError, match="rounds must be >= 1"):
        ProfileSettings(input_size=32, rounds=0)


def test_profile_rounds_interleave_and_continue(tmp_path, micro, monkeypatch):
    """Rounds are passes over the whole list (u1 u2 ... u1 u2 ...), and a finished one-round run
    continued with rounds=2 times every unit and arch exactly once more, old CSVs included."""
    order: list[int] = []
    real = profiler_mod.time_module

    def spy(module, *args, **kwargs):
        order.append(sum(p.numel() for p in module.parameters()) * 1000 + args[0])  # unit identity: size, resolution
        return real(module, *args, **kwargs)

    out = tmp_path / "p"
    one = ProfileSettings(input_size=32, n_validate=3, **FAST)
    run_profile(micro, out, one)
    first = LatencyTable.load(out).entries
    # a validation table from before rounds existed: no latency_rounds column
    lines = (out / "validation.csv").read_text().splitlines()
    (out / "validation.csv").write_text("\n".join(",".join(c.split(",")[:-1]) if not c.startswith("#") else c
                                                   for c in lines) + "\n")
    monkeypatch.setattr(profiler_mod, "time_module", spy)
    res = run_profile(micro, out, ProfileSettings(input_size=32, n_validate=3, rounds=2, **FAST))
    assert (res.n_units_timed_now, res.n_validate_timed_now) == (res.n_units, 3)
    assert len(order) == res.n_units + 3  # one more round each, nothing else
    lut = LatencyTable.load(out)
    assert lut.complete and all(e["rounds"] == 2 and e["runs"] == 4 for e in lut.entries.values())
    assert all(lut.entries[k]["min_ms"] <= first[k]["min_ms"] for k in first)
    _, df = read_arch_table(out / "validation.csv", micro, metrics=("latency_ms", "latency_rounds"))
    assert df["latency_rounds"].tolist() == [2, 2, 2]
    again = run_profile(micro, out, ProfileSettings(input_size=32, n_validate=3, rounds=2, **FAST))
    assert (again.n_units_timed_now, again.n_validate_timed_now) == (0, 0)

    order.clear()
    run_profile(micro, tmp_path / "q", ProfileSettings(input_size=32, n_validate=0, rounds=2, **FAST))
    n = len(order) // 2
    assert order[:n] == order[n:] and len(set(order[:n])) > 1  # the whole list, then the whole list again


def test_profile_refuses_other_settings(tmp_path, micro):
    run_profile(micro, tmp_path, ProfileSettings(input_size=32, n_validate=0, **FAST))
    with pytest.raises(HardwareError, match="threads=1.*threads=2"):
        run_profile(micro, tmp_path, ProfileSettings(input_size=32, n_validate=0, **{**FAST, "threads": 2}))


def test_lut_profile_gives_a_latency_fn(tmp_path, micro):
    out = tmp_path / "prof"
    run_profile(micro, out, ProfileSettings(input_size=32, n_validate=12, **FAST))
    prof = profile_from_dict({"name": "dev", "kind": "cpu", "latency": {"method": "lut", "path": str(out)}})
    fn = latency_fn(prof, micro)
    archs = micro.sample(40, seed=5)
    ms = fn(archs)
    assert ms.shape == (len(archs),) and bool((ms > 0).all())
    assert fn.w is not None  # residual fitted on the 12 validation archs
    plain = latency_fn(prof.model_copy(update={"latency": prof.latency.model_copy(update={"residual": False})}), micro)
    assert torch.allclose(plain(archs), plain.lut_sum(archs))
    table = LatencyTable.load(out)
    assert plain(archs[:1]).item() == pytest.approx(table.arch_ms(micro.to_arch_cfg(archs[0]), 32, 10))


def test_cli_profile_runs_and_resumes(tmp_path, micro_yaml, capsys):
    argv = ["profile", "--device", "host-cpu", "--space", str(micro_yaml), "--out", str(tmp_path / "p"),
            "--n-validate", "3", "--runs", "2", "--warmup", "0", "--validate-runs", "2", "--quiet"]
    assert main(argv) == 0
    first = capsys.readouterr().out
    assert "(50 timed now)" in first and "3 validation archs" in first
    assert main(argv) == 0
    assert "(0 timed now)" in capsys.readouterr().out
    assert main(["profile", "--device", "host-cpu", "--space", str(micro_yaml), "--out", str(tmp_path / "q"), "--count"]) == 0
    assert "50 distinct units" in capsys.readouterr().out
    assert not (tmp_path / "q").exists()


def test_cli_profile_bad_device(tmp_path, micro_yaml, capsys):
    assert main(["profile", "--device", "toaster", "--space", str(micro_yaml), "--out", str(tmp_path / "p")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("hytnas: error: device profile: unknown device 'toaster'") and "\n" not in err
    assert not (tmp_path / "p").exists()


# ------------------------------------------------------------------------------ search wiring
def test_device_wiring_for_an_mcu():
    from hytnas.devices import device_wiring, trial_latency_ms

    space = get_space("hytnas-tiny")
    w = device_wiring("stm32f746", space, ["val_accuracy", "latency_ms"], ["macs_m <= 30"])
    assert w.latency_known and {o.name: o.source for o in w.objectives} == {"val_accuracy": "reported",
                                                                              "latency_ms": "known"}
    assert [str(c) for c in w.constraints] == ["macs_m <= 30", "peak_sram_kb <= 320", "model_size_kb <= 1024"]
    a = space.sample(3, seed=2)
    assert torch.equal(w.known_fns["latency_ms"](a), latency_fn("stm32f746", space)(a))
    assert trial_latency_ms("stm32f746", space, a[0]) == pytest.approx(float(w.known_fns["latency_ms"](a[:1])[0]))
    assert device_wiring("stm32f746", space, ["val_accuracy"], memory=False).constraints == ()


def test_device_wiring_leaves_measured_latency_alone(micro):
    from hytnas.devices import device_wiring, trial_latency_ms

    w = device_wiring("host-cpu", micro, ["val_accuracy", "latency_ms"])
    assert not w.known_fns and w.objectives[1].source == "reported" and w.constraints == ()
    assert trial_latency_ms("host-cpu", micro, micro.sample(1)[0]) is None
    # a LUT profile without its table is fine while latency is not used, and one clear line when it is
    assert not device_wiring("raspberry-pi-4", micro, ["val_accuracy", "params_k"]).known_fns
    with pytest.raises(HardwareError, match="raspberry-pi-4.*latency.path is not set"):
        device_wiring("raspberry-pi-4", micro, ["val_accuracy"], ["latency_ms <= 5"])


def test_cli_profile_refuses_an_mcu(tmp_path, micro_yaml, capsys):
    assert main(["profile", "--device", "stm32f746", "--space", str(micro_yaml), "--out", str(tmp_path / "p")]) == 2
    assert "stm32f746 is a microcontroller" in capsys.readouterr().err
    assert not (tmp_path / "p").exists()


def test_profile_min_statistic(tmp_path, micro):
    out = tmp_path / "prof"
    run_profile(micro, out, ProfileSettings(input_size=32, n_validate=3, statistic="min", **FAST))
    lut = LatencyTable.load(out)
    assert lut.statistic == "min"
    assert all(0 < e["min_ms"] <= e["median_ms"] for e in lut.entries.values())
    spec = next(iter(space_block_specs(micro).values()))
    assert lut.unit_ms(spec) == lut.entries[spec.key]["min_ms"]
    assert lut.with_statistic("median").unit_ms(spec) == lut.entries[spec.key]["median_ms"]
    archs, df = read_arch_table(out / "validation.csv", micro, metrics=("latency_ms", "latency_min_ms", "latency_median_ms"))
    assert list(df["latency_ms"]) == list(df["latency_min_ms"])
    assert (df["latency_min_ms"] <= df["latency_median_ms"]).all()
    with pytest.raises(HardwareError, match="statistic=.min.*statistic=.median"):
        run_profile(micro, out, ProfileSettings(input_size=32, n_validate=3, **FAST))
