"""The block registry and build_model: shapes at every resolution, block semantics, errors."""
from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from hytnas.errors import ConfigError
from hytnas.models import BLOCKS, ArchCfg, BlockCfg, build_model
from hytnas.models.blocks import InvertedResidual, MobileViTBlock, fold_patches, make_act, patch_grid, unfold_patches
from hytnas.models.config import ACTIVATIONS
from hytnas.space import get_space

SPACES = ("hytnas", "hytnas-tiny")


def tiny_arch(act: str = "silu", p: int = 2, head_chs: int | None = 16) -> ArchCfg:
    """One block of every type."""
    return ArchCfg(
        blocks=(
            BlockCfg("conv_bn_act", c=8, k=3),
            BlockCfg("dsconv", c=12, s=2),
            BlockCfg("mv2", c=16, d=2, s=2, e=2),
            BlockCfg("mobilevit", c=16, t=1, h=2, f=1.5, p=p),
        ),
        stem_chs=8, head_chs=head_chs, act=act,
    )


def test_registry_has_the_four_block_types():
    assert set(BLOCKS) == {"conv_bn_act", "dsconv", "mv2", "mobilevit"}


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(space=st.sampled_from(SPACES), seed=st.integers(0, 10_000), size=st.sampled_from([28, 32, 96, 224]),
       in_channels=st.sampled_from([1, 3]))
def test_forward_shape_of_sampled_archs(space, seed, size, in_channels):
    s = get_space(space)
    arch = s.to_arch_cfg(s.sample(1, seed=seed)[0])
    model = build_model(arch, num_classes=7, in_channels=in_channels, input_size=size).eval()
    with torch.inference_mode():
        y = model(torch.randn(2, in_channels, size, size))
    assert y.shape == (2, 7)
    assert torch.isfinite(y).all()


@pytest.mark.parametrize("size", [16, 28, 30, 32, 96])
@pytest.mark.parametrize("p", [2, 3, 8])
def test_mobilevit_runs_when_the_map_is_not_a_multiple_of_the_patch(size, p):
    model = build_model(tiny_arch(p=p), num_classes=3, input_size=size).eval()
    with torch.inference_mode():
        assert model(torch.randn(1, 3, size, size)).shape == (1, 3)


def test_train_mode_backward_reaches_every_parameter():
    model = build_model(tiny_arch(), num_classes=4, input_size=32)
    loss = model(torch.randn(2, 3, 32, 32)).logsumexp(1).sum()
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())


def test_unfold_matches_cvnets_layout_and_fold_inverts_it():
    B, D, H, W, p = 2, 3, 4, 6, 2
    x = torch.arange(B * D * H * W, dtype=torch.float32).reshape(B, D, H, W)
    u = unfold_patches(x, p)
    assert u.shape == (B * p * p, (H // p) * (W // p), D)
    # sequence b * p^2 + (ph * p + pw) holds pixel (ph, pw) of every patch; token nh * (W / p) + nw is patch (nh, nw)
    for b, ph, pw, nh, nw in [(0, 0, 0, 0, 0), (1, 1, 0, 1, 2), (0, 0, 1, 1, 1), (1, 1, 1, 0, 2)]:
        seq, tok = b * p * p + ph * p + pw, nh * (W // p) + nw
        assert torch.equal(u[seq, tok], x[b, :, nh * p + ph, nw * p + pw])
    assert torch.equal(fold_patches(u, p, H, W), x)


@pytest.mark.parametrize("h,w,p,expected", [(8, 8, 2, (8, 8)), (7, 9, 2, (8, 10)), (1, 1, 4, (4, 4)), (12, 12, 8, (16, 16))])
def test_patch_grid_rounds_up(h, w, p, expected):
    assert patch_grid(h, w, p) == expected


@pytest.mark.parametrize("stride,in_chs,out_chs,skip", [(1, 16, 16, True), (2, 16, 16, False), (1, 16, 24, False)])
def test_mv2_shortcut_only_when_shapes_match(stride, in_chs, out_chs, skip):
    block = BLOCKS["mv2"](BlockCfg("mv2", c=out_chs, s=stride, e=4), in_chs, stride, "relu6")
    assert isinstance(block, InvertedResidual) and block.has_skip is skip
    # with a zero projection the block returns its input (shortcut) or zeros (no shortcut)
    nn.init.zeros_(block.project.bn.weight)
    x = torch.randn(1, in_chs, 8, 8)
    y = block.eval()(x)
    assert torch.equal(y, x) if skip else torch.count_nonzero(y) == 0


def test_mv2_expand_is_skipped_at_ratio_one_and_hidden_width_is_rounded():
    b1 = BLOCKS["mv2"](BlockCfg("mv2", c=8, e=1), 8, 1, "relu")
    assert isinstance(b1.expand, nn.Identity)
    b15 = BLOCKS["mv2"](BlockCfg("mv2", c=8, e=1.5), 11, 1, "relu")
    assert b15.expand.conv.out_channels == round(11 * 1.5) == b15.dw.conv.groups


def test_mobilevit_block_structure_is_cvnets_v1():
    cfg = BlockCfg("mobilevit", c=24, t=3, h=4, f=1.5, p=2, dim=20)
    block = BLOCKS["mobilevit"](cfg, 24, 1, "silu")
    assert isinstance(block, MobileViTBlock)
    assert block.conv_kxk.conv.kernel_size == (3, 3) and block.conv_kxk.conv.out_channels == 24
    assert block.conv_1x1.out_channels == 20 and block.conv_1x1.bias is None  # no BN, no act, no bias
    assert len(block.transformer) == 3 and isinstance(block.norm, nn.LayerNorm)
    layer = block.transformer[0]
    assert layer.attn.heads == 4 and layer.attn.qkv.bias is not None and layer.mlp.fc1.out_features == 30
    assert block.conv_proj.conv.in_channels == 20 and block.conv_fusion.conv.in_channels == 48


def test_default_transformer_width_is_largest_power_of_two():
    block = BLOCKS["mobilevit"](BlockCfg("mobilevit", c=96, t=1, h=4), 96, 1, "silu")
    assert block.conv_1x1.out_channels == 64


def test_convs_followed_by_bn_have_no_bias():
    model = build_model(tiny_arch(), num_classes=5)
    assert all(m.bias is None for m in model.modules() if isinstance(m, nn.Conv2d))


@pytest.mark.parametrize("act", ACTIVATIONS)
def test_activation_is_the_archs(act):
    model = build_model(tiny_arch(act=act), num_classes=2)
    kinds = {type(m) for m in model.modules()}
    assert type(make_act(act)) in kinds
    others = {type(make_act(a)) for a in ACTIVATIONS if a != act}
    assert not kinds & others


def test_head_and_recorded_settings():
    model = build_model(tiny_arch(head_chs=None), num_classes=5, in_channels=1, input_size=28, dropout=0.2)
    assert model.input_size == 28 and model.num_classes == 5 and model.in_channels == 1
    assert isinstance(model.head.conv, nn.Identity) and model.head.fc.in_features == 16
    assert model.head.drop.p == 0.2
    assert build_model(tiny_arch(head_chs=40), num_classes=5).head.fc.in_features == 40


def test_repeats_carry_the_stride_on_the_first_only():
    model = build_model(tiny_arch(), num_classes=2)
    stage = model.stages[2]
    assert len(stage) == 2
    assert stage[0].dw.conv.stride == (2, 2) and stage[1].dw.conv.stride == (1, 1)


@pytest.mark.parametrize(
    "arch,field",
    [
        (ArchCfg((BlockCfg("mv2", c=8), BlockCfg("mobilevit", c=16, t=1)),), "blocks[1]"),
        (ArchCfg((BlockCfg("mobilevit", c=16, t=1, s=2),)), "blocks[0]"),
        (ArchCfg((BlockCfg("mobilevit", c=16, t=1, h=3),)), "blocks[0]"),
        (ArchCfg((BlockCfg("mobilevit", c=16, t=0),)), "blocks[0]"),
        (ArchCfg((BlockCfg("mv2", c=8, e=0),)), "blocks[0]"),
        (ArchCfg((BlockCfg("mv3", c=8),)), "blocks[0].type"),
        (ArchCfg((BlockCfg("mv2", c=8),), head_chs=0), "head_chs"),
    ],
)
def test_unbuildable_configs_name_the_block(arch, field):
    with pytest.raises(ConfigError, match=field.replace("[", r"\[").replace("]", r"\]")) as exc:
        build_model(arch, num_classes=10)
    assert "\n" not in str(exc.value)


@pytest.mark.parametrize("kwargs,field", [({"num_classes": 0}, "num_classes"), ({"num_classes": 2.5}, "num_classes"),
                                          ({"in_channels": 0}, "in_channels"), ({"input_size": -1}, "input_size"),
                                          ({"dropout": 1.0}, "dropout")])
def test_bad_arguments_name_the_field(kwargs, field):
    with pytest.raises(ConfigError, match=field):
        build_model(tiny_arch(), **{"num_classes": 10, **kwargs})
