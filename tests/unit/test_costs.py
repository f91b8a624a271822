"""The analytic cost model against the built model (params, flop_counter MACs, layer tensors),
a hand-computed peak, determinism, latency measurement and the ``hytnas costs`` command."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from hytnas.cli import main
from hytnas.costs import (
    BLOCK_COSTS,
    LatencyResult,
    arch_costs,
    count_macs,
    count_params,
    measure_latency,
    model_size,
    op_trace,
    peak_memory,
)
from hytnas.costs.measured import SDPA_CPU_MAPPING, measure_model
from hytnas.errors import ConfigError
from hytnas.models import BLOCKS, ArchCfg, BlockCfg, build_model
from hytnas.models.blocks import Attention
from hytnas.objectives import COST_METRICS
from hytnas.space import get_space

SPACES = ("hytnas", "hytnas-tiny")
SMALL_SIZES = (28, 32, 36)  # 28 and 36 leave maps that are not multiples of the patch


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models: intra-op threads only add overhead (and stall on a shared machine)."""
    prev = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(prev)


def assert_matches_model(arch: ArchCfg, size: int, num_classes: int = 10, in_channels: int = 3) -> None:
    model = build_model(arch, num_classes, in_channels=in_channels, input_size=size)
    measured = measure_model(model, size, in_channels)
    costs = arch_costs(arch, size, num_classes, in_channels)
    where = f"{arch.name or arch.arch_id} at {size} px"
    assert costs["params"] == measured.params, where
    assert costs["macs"] == measured.macs, where
    trace = [(o.name, o.kind, o.in_elems, o.out_elems) for o in op_trace(arch, size, num_classes, in_channels)
             if o.kind in ("conv", "linear")]
    assert trace == list(measured.layers), where


def test_cost_functions_registered_for_every_block_type():
    assert set(BLOCK_COSTS) == set(BLOCKS)


@pytest.mark.slow
@pytest.mark.parametrize("space", SPACES)
def test_exact_on_200_random_archs_at_small_sizes(space):
    s = get_space(space)
    torch.manual_seed(0)
    for i, a in enumerate(s.sample(200, seed=11)):
        assert_matches_model(s.to_arch_cfg(a), SMALL_SIZES[i % len(SMALL_SIZES)], num_classes=2 + i % 9,
                             in_channels=1 + 2 * (i % 2))


@pytest.mark.parametrize("space", SPACES)
def test_exact_on_a_few_archs_at_224(space):
    s = get_space(space)
    for a in s.sample(3, seed=5):
        assert_matches_model(s.to_arch_cfg(a), 224, num_classes=1000)


def test_exact_for_every_block_type_and_activation():
    arch = ArchCfg(
        blocks=(BlockCfg("conv_bn_act", c=8, k=5), BlockCfg("dsconv", c=12, d=2, s=2), BlockCfg("mv2", c=20, s=2, e=1.5),
                BlockCfg("mv2", c=20, e=1), BlockCfg("mobilevit", c=20, t=2, h=2, f=1.5, p=3, dim=12)),
        stem_chs=8, head_chs=24, act="hardswish",
    )
    for size in (16, 23, 64):
        assert_matches_model(arch, size, num_classes=3)
    assert_matches_model(ArchCfg(blocks=(), stem_chs=4, stem_stride=1), 9, num_classes=2)  # stem + classifier only


def test_flop_counter_counts_cpu_attention_with_the_mapping():
    # QK^T and AV: 2 matmuls of seqs x heads x N x N x head_dim multiply-adds each
    seqs, n, dim, heads = 4, 9, 16, 2
    attn = Attention(dim, heads)
    with torch.inference_mode(), FlopCounterMode(display=False, custom_mapping=SDPA_CPU_MAPPING) as fc:
        attn(torch.randn(seqs, n, dim))
    linears = seqs * n * (dim * 3 * dim + dim * dim)
    assert fc.get_total_flops() // 2 == linears + 2 * seqs * n * n * dim
    q = torch.randn(seqs, heads, n, dim // heads)
    with torch.inference_mode(), FlopCounterMode(display=False) as plain:
        F.scaled_dot_product_attention(q, q, q)
    # torch's own table may gain the CPU kernel one day; then the mapping only restates it
    assert plain.get_total_flops() in (0, 4 * seqs * n * n * dim)


def hand_arch() -> ArchCfg:
    return ArchCfg(blocks=(BlockCfg("mv2", c=8, e=2), BlockCfg("mobilevit", c=8, t=1, h=4, f=2, p=2, dim=8)),
                   stem_chs=8, head_chs=None)


def test_hand_computed_costs_of_a_tiny_arch():
    # 3 x 8 x 8 input; stem -> 8 x 4 x 4 (128 elements); MV2 8 -> 16 -> 8 with shortcut; MobileViT c = dim = 8,
    # p = 2 on 4 x 4: 4 sequences of 4 tokens (L = 128 elements), 4 heads -> scores 4 * 4 * 4 * 4 = 256.
    ops = {o.name: o.live_elems for o in op_trace(hand_arch(), 8, 10)}
    assert ops["stem.conv"] == 192 + 128
    assert ops["stages.0.0.expand.conv"] == 128 + 256
    assert ops["stages.0.0.dw.conv"] == 256 + 256 + 128  # + the input held for the shortcut
    assert ops["stages.0.0.project.conv"] == 256 + 128 + 128
    assert ops["stages.1.0.transformer.0.attn.qkv"] == 128 + 384 + 128 + 128  # held: layer input, block input
    assert ops["stages.1.0.transformer.0.attn.qk"] == 256 + 256 + 128 + 128 + 128  # held: v, layer, block input
    assert ops["stages.1.0.transformer.0.mlp.fc1"] == 128 + 256 + 128 + 128
    assert ops["stages.1.0.conv_fusion.conv"] == 256 + 128  # concat of block input and projection
    assert "stages.1.0.resize_in" not in ops
    assert peak_memory(hand_arch(), 8, 10) == 896 == max(ops.values())
    assert peak_memory(hand_arch(), 8, 10, bytes_per_elem=4) == 4 * 896
    # params: stem 3*8*9 + 16; mv2 8*16 + 32 + 16*9 + 32 + 16*8 + 16; mobilevit 8*8*9 + 16 + 8*8 + transformer
    # (2 * 8 LN + 8*24 + 24 + 8*8 + 8 + 2 * 8 LN + 8*16 + 16 + 16*8 + 8) + 16 LN + 8*8 + 16 + 16*8*9 + 16; fc 8*10 + 10
    params = (216 + 16) + (128 + 32 + 144 + 32 + 128 + 16) + (576 + 16 + 64 + (16 + 216 + 72 + 16 + 144 + 136) + 16
                                                               + 64 + 16 + 1152 + 16) + 90
    assert count_params(hand_arch(), 8, 10) == params
    assert model_size(hand_arch(), 8, 10, bytes_per_param=4) == 4 * params
    # MACs: stem 16*8*27; mv2 16*(8*16 + 16*9 + 16*8); mobilevit 16*(8*8*9 + 8*8) + 16*(8*24 + 8*8 + 8*16 + 16*8)
    # + attention 2 * 4 seqs * 4^2 * 8 + 16*(8*8 + 16*8*9); fc 80
    macs = 3456 + 16 * 400 + 16 * 640 + 16 * 512 + 1024 + 16 * 1216 + 80
    assert count_macs(hand_arch(), 8, 10) == macs


def test_resize_appears_in_the_trace_when_the_map_is_not_a_multiple_of_p():
    ops = {o.name: o for o in op_trace(hand_arch(), 10, 10)}  # stem -> 5 x 5, resized to 6 x 6
    assert ops["stages.1.0.resize_in"].in_elems == 8 * 25 and ops["stages.1.0.resize_in"].out_elems == 8 * 36
    assert ops["stages.1.0.resize_out"].out_elems == 8 * 25


def test_arch_costs_keys_units_and_determinism():
    s = get_space("hytnas-tiny")
    arch = s.to_arch_cfg(s.sample(1, seed=3)[0])
    c = arch_costs(arch, 96, 10)
    assert set(c) == set(COST_METRICS) | {"params", "macs", "peak_sram_bytes", "peak_sram_fp32_bytes"}
    assert all(isinstance(c[k], int) for k in ("params", "macs", "peak_sram_bytes", "peak_sram_fp32_bytes"))
    assert c["params_k"] == c["params"] / 1000 and c["macs_m"] == c["macs"] / 1e6
    assert c["peak_sram_kb"] == c["peak_sram_bytes"] / 1024 and c["peak_sram_fp32_bytes"] == 4 * c["peak_sram_bytes"]
    assert c["model_size_kb"] == c["params"] / 1024 and c["model_size_fp32_kb"] == 4 * c["params"] / 1024
    assert arch_costs(arch, 96, 10) == c
    assert arch_costs(arch.with_name("renamed"), 96, 10) == c
    assert arch_costs(s.to_arch_cfg(s.sample(1, seed=3)[0]), 96, 10) == c


def test_costs_grow_with_resolution_and_classes():
    arch = hand_arch()
    assert count_macs(arch, 64, 10) > count_macs(arch, 32, 10)
    assert peak_memory(arch, 64, 10) > peak_memory(arch, 32, 10)
    assert count_params(arch, 64, 10) == count_params(arch, 32, 10) < count_params(arch, 32, 11)


@pytest.mark.parametrize("kwargs,field", [({"input_size": 0}, "input_size"), ({"num_classes": 0}, "num_classes"),
                                          ({"in_channels": 1.5}, "in_channels"), ({"input_size": True}, "input_size")])
def test_bad_arguments_name_the_field(kwargs, field):
    with pytest.raises(ConfigError, match=field):
        arch_costs(hand_arch(), **{"input_size": 32, "num_classes": 10, **kwargs})


def test_bad_arch_is_a_config_error():
    with pytest.raises(ConfigError, match=r"blocks\[1\]"):
        arch_costs(ArchCfg((BlockCfg("mv2", c=8), BlockCfg("mobilevit", c=16, t=1))), 32, 10)


def test_hytnas_tiny_has_many_mcu_sized_archs():
    """The space is meant to be rich in models under 250 k params and 256 kB int8 peak SRAM."""
    s = get_space("hytnas-tiny")
    costs = [arch_costs(s.to_arch_cfg(a), s.input_size, 10) for a in s.sample(1000, seed=0)]
    fits = np.mean([c["params"] < 250_000 and c["peak_sram_kb"] < 256 for c in costs])
    assert fits >= 0.30


# ------------------------------------------------------------------------------------ latency
def test_measure_latency_restores_threads_and_mode():
    model = build_model(hand_arch(), num_classes=10)
    before = torch.get_num_threads()
    threads = 2 if before == 1 else 1
    r = measure_latency(model, 32, threads=threads, runs=5, warmup=1)
    assert isinstance(r, LatencyResult) and r.runs == 5 and r.threads == threads
    assert 0 < r.p25_ms <= r.median_ms <= r.p75_ms and math.isclose(r.iqr_ms, r.p75_ms - r.p25_ms)
    assert torch.get_num_threads() == before and model.training
    with pytest.raises(AttributeError):
        r.median_ms = 0.0  # frozen


def test_measure_latency_runs_batch_one_in_eval_inference_mode_with_the_threads():
    seen = []

    class Probe(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(4, 2)

        def forward(self, x):
            seen.append((tuple(x.shape), self.training, torch.is_inference_mode_enabled(), torch.get_num_threads()))
            return self.lin(x.mean((2, 3)))

    threads = 2 if torch.get_num_threads() == 1 else 1
    measure_latency(Probe(), 8, in_channels=4, threads=threads, runs=3, warmup=2)
    assert seen == [((1, 4, 8, 8), False, True, threads)] * 5


@pytest.mark.parametrize("kwargs,field", [({"threads": 0}, "threads"), ({"runs": 0}, "runs"),
                                          ({"warmup": -1}, "warmup"), ({"input_size": 0}, "input_size")])
def test_measure_latency_rejects_bad_settings(kwargs, field):
    with pytest.raises(ConfigError, match=field):
        measure_latency(build_model(hand_arch(), num_classes=2), **{"input_size": 32, **kwargs})


# ---------------------------------------------------------------------------------------- CLI
def test_cli_costs_space_table(capsys):
    assert main(["costs", "--space", "hytnas-tiny", "-n", "3", "--seed", "1"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].split() == ["name", "input", "classes", "params_k", "macs_m", "peak_sram_kb", "model_size_kb"]
    assert len(lines) == 4
    s = get_space("hytnas-tiny")
    first = s.sample(3, seed=1)[0]
    c = arch_costs(s.to_arch_cfg(first), 96, 10)
    assert lines[1].split() == [s.arch_id(first), "96", "10", f"{c['params_k']:.1f}", f"{c['macs_m']:.1f}",
                                f"{c['peak_sram_kb']:.1f}", f"{c['model_size_kb']:.1f}"]


def test_cli_costs_zoo_uses_published_setting(capsys):
    assert main(["costs", "--zoo", "mobilenet_v1_025", "mobilevit_xxs", "--num-classes", "1000"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[1].split()[:3] == ["mobilenet_v1_025", "96", "1000"] and out[2].split()[:3] == ["mobilevit_xxs", "256", "1000"]


@pytest.mark.parametrize("argv,field", [
    (["--zoo", "resnet50"], "zoo"),
    (["--space", "no-such-space"], "space"),
    (["-n", "0"], "-n"),
    (["--num-classes", "0"], "--num-classes"),
    (["--input-size", "0", "--zoo", "mobilevit_xxs"], "--input-size"),
    (["--seed", "-3"], "--seed"),
])
def test_cli_costs_bad_input_is_one_line_exit_2(argv, field, capsys):
    assert main(["costs", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("hytnas: error:") and field in err and len(err.splitlines()) == 1
