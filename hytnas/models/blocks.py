"""Block registry: the layers every model of the platform is built from.

``BLOCKS[type](cfg, in_chs, stride, act) -> nn.Module`` builds one repeat of a
:class:`~hytnas.models.config.BlockCfg`. The analytic cost model (``hytnas.costs.BLOCK_COSTS``)
has one cost function per key of this registry: a new block type adds both, side by side, and
``tests/unit/test_costs.py`` checks that they agree with the built module.

Conventions (shared with ``hytnas.costs``):

- every conv is ``k x k`` with padding ``k // 2`` and no bias when a BatchNorm follows it;
- activations come from ``ArchCfg.act`` (:func:`make_act`), the transformer FFN included
  (SiLU in every MobileViT config, as in ml-cvnets);
- tensors are ``(B, C, H, W)`` in the conv path and ``(B * p * p, N, dim)`` in a MobileViT
  block's transformer (``N`` patches of ``p x p`` pixels, ml-cvnets' unfold).
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from hytnas.errors import ConfigError
from hytnas.models.config import ArchCfg, BlockCfg

_ACTS: dict[str, Callable[[], nn.Module]] = {
    "silu": lambda: nn.SiLU(inplace=True),
    "relu": lambda: nn.ReLU(inplace=True),
    "relu6": lambda: nn.ReLU6(inplace=True),
    "hardswish": lambda: nn.Hardswish(inplace=True),
    "gelu": lambda: nn.GELU(),
}


def make_act(name: str) -> nn.Module:
    """The activation module of ``name`` (one of ``hytnas.models.config.ACTIVATIONS``)."""
    try:
        return _ACTS[name]()
    except KeyError:
        raise ConfigError(f"act: unknown activation {name!r}; choose one of {', '.join(_ACTS)}") from None


# ------------------------------------------------------------------------- shared arithmetic
def mv2_hidden_chs(in_chs: int, e: float) -> int:
    """Width of an MV2 block's depthwise conv: ``round(in_chs * e)`` (torchvision's rule)."""
    return int(round(in_chs * e))


def patch_grid(h: int, w: int, p: int) -> tuple[int, int]:
    """The feature-map size a MobileViT block unfolds: ``h`` and ``w`` rounded up to multiples of
    ``p`` (ml-cvnets resizes to it bilinearly when they differ, and back after folding)."""
    return math.ceil(h / p) * p, math.ceil(w / p) * p


# ------------------------------------------------------------------------------ small layers
class ConvBnAct(nn.Module):
    """``k x k`` conv (padding ``k // 2``, no bias), BatchNorm, activation (``act=None``: none)."""

    def __init__(self, in_chs: int, out_chs: int, k: int = 1, stride: int = 1, groups: int = 1,
                 act: str | None = "relu") -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_chs, out_chs, k, stride, k // 2, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(out_chs)
        self.act = make_act(act) if act else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))  # (B, C_in, H, W) -> (B, C_out, H / s, W / s)


class Attention(nn.Module):
    """Multi-head self-attention: qkv Linear (bias), ``scaled_dot_product_attention``, proj Linear."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, N, D = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.heads, D // self.heads)  # (B, N, 3, h, D / h)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # 3 x (B, h, N, D / h)
        x = F.scaled_dot_product_attention(q, k, v)  # (B, h, N, D / h)
        return self.proj(x.transpose(1, 2).reshape(B, N, D))  # (B, N, D)


class Mlp(nn.Module):
    """Transformer FFN: Linear(dim, hidden), activation, Linear(hidden, dim)."""

    def __init__(self, dim: int, hidden: int, act: str) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = make_act(act)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))  # (B, N, D) -> (B, N, hidden) -> (B, N, D)


class TransformerLayer(nn.Module):
    """Pre-norm transformer layer: ``x + attn(norm1(x))``, then ``x + mlp(norm2(x))``."""

    def __init__(self, dim: int, heads: int, ffn_dim: int, act: str) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, ffn_dim, act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))  # (B, N, D)
        return x + self.mlp(self.norm2(x))  # (B, N, D)


# ---------------------------------------------------------------------------------- blocks
class DepthwiseSeparable(nn.Module):
    """MobileNetV1 block: depthwise 3x3 (stride) BN act, pointwise 1x1 BN act."""

    def __init__(self, in_chs: int, out_chs: int, stride: int, act: str) -> None:
        super().__init__()
        self.dw = ConvBnAct(in_chs, in_chs, 3, stride, groups=in_chs, act=act)
        self.pw = ConvBnAct(in_chs, out_chs, 1, act=act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pw(self.dw(x))  # (B, C_in, H, W) -> (B, C_in, H / s, W / s) -> (B, C_out, ...)


class InvertedResidual(nn.Module):
    """MobileNetV2 block: 1x1 expand (skipped when ``e == 1``), dw 3x3 (stride), 1x1 linear
    projection; identity shortcut when ``stride == 1`` and ``in_chs == out_chs``."""

    def __init__(self, in_chs: int, out_chs: int, stride: int, e: float, act: str) -> None:
        super().__init__()
        hidden = mv2_hidden_chs(in_chs, e)
        self.expand = ConvBnAct(in_chs, hidden, 1, act=act) if e != 1 else nn.Identity()
        self.dw = ConvBnAct(hidden, hidden, 3, stride, groups=hidden, act=act)
        self.project = ConvBnAct(hidden, out_chs, 1, act=None)
        self.has_skip = stride == 1 and in_chs == out_chs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.project(self.dw(self.expand(x)))  # (B, C_in, H, W) -> (B, hidden, H / s, W / s) -> (B, C_out, ...)
        return x + y if self.has_skip else y


def unfold_patches(x: torch.Tensor, p: int) -> torch.Tensor:
    """``(B, D, H, W) -> (B * p * p, N, D)`` with ``N = (H / p) (W / p)`` (ml-cvnets' unfolding:
    one sequence per pixel position inside a patch, attending across patches)."""
    B, D, H, W = x.shape
    x = x.reshape(B, D, H // p, p, W // p, p)  # (B, D, nh, p, nw, p)
    return x.permute(0, 3, 5, 2, 4, 1).reshape(B * p * p, (H // p) * (W // p), D)


def fold_patches(x: torch.Tensor, p: int, h: int, w: int) -> torch.Tensor:
    """Inverse of :func:`unfold_patches`: ``(B * p * p, N, D) -> (B, D, h, w)``."""
    BP, _, D = x.shape
    x = x.reshape(BP // (p * p), p, p, h // p, w // p, D)  # (B, p, p, nh, nw, D)
    return x.permute(0, 5, 3, 1, 4, 2).reshape(BP // (p * p), D, h, w)


def _resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    if tuple(x.shape[-2:]) == size:
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


class MobileViTBlock(nn.Module):
    """MobileViT v1 block (ml-cvnets): local 3x3 conv-BN-act and 1x1 conv to ``dim`` (no BN, no
    act, no bias); unfold into ``p x p`` patches; ``depth`` pre-norm transformer layers and a
    LayerNorm; fold; 1x1 conv-BN-act back to ``chs``; concat with the input and fuse with a 3x3
    conv-BN-act. Feature maps that are not multiples of ``p`` are resized bilinearly up to the
    next multiple before unfolding and back after folding."""

    def __init__(self, chs: int, dim: int, depth: int, heads: int, ffn_dim: int, p: int, act: str) -> None:
        super().__init__()
        self.p = p
        self.conv_kxk = ConvBnAct(chs, chs, 3, act=act)
        self.conv_1x1 = nn.Conv2d(chs, dim, 1, bias=False)
        self.transformer = nn.Sequential(*[TransformerLayer(dim, heads, ffn_dim, act) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.conv_proj = ConvBnAct(dim, chs, 1, act=act)
        self.conv_fusion = ConvBnAct(2 * chs, chs, 3, act=act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        H, W = x.shape[-2:]
        y = self.conv_1x1(self.conv_kxk(x))  # (B, C, H, W) -> (B, D, H, W)
        y = _resize(y, patch_grid(H, W, self.p))  # (B, D, H', W'), H' = ceil(H / p) p
        z = self.norm(self.transformer(unfold_patches(y, self.p)))  # (B p p, N, D)
        y = _resize(fold_patches(z, self.p, *y.shape[-2:]), (H, W))  # (B, D, H, W)
        return self.conv_fusion(torch.cat((x, self.conv_proj(y)), dim=1))  # (B, 2C, H, W) -> (B, C, H, W)


# -------------------------------------------------------------------------------- registry
BlockFn = Callable[[BlockCfg, int, int, str], nn.Module]


def _conv_bn_act(cfg: BlockCfg, in_chs: int, stride: int, act: str) -> nn.Module:
    return ConvBnAct(in_chs, cfg.c, cfg.k, stride, act=act)


def _dsconv(cfg: BlockCfg, in_chs: int, stride: int, act: str) -> nn.Module:
    return DepthwiseSeparable(in_chs, cfg.c, stride, act)


def _mv2(cfg: BlockCfg, in_chs: int, stride: int, act: str) -> nn.Module:
    return InvertedResidual(in_chs, cfg.c, stride, cfg.e, act)


def _mobilevit(cfg: BlockCfg, in_chs: int, stride: int, act: str) -> nn.Module:
    return MobileViTBlock(cfg.c, cfg.width, cfg.t, cfg.h, cfg.ffn_dim, cfg.p, act)


#: block type -> constructor ``(cfg, in_chs, stride, act) -> nn.Module`` (one repeat)
BLOCKS: dict[str, BlockFn] = {
    "conv_bn_act": _conv_bn_act,
    "dsconv": _dsconv,
    "mv2": _mv2,
    "mobilevit": _mobilevit,
}


# ------------------------------------------------------------------------------ validation
def _problem(cfg: BlockCfg, in_chs: int) -> str | None:
    """What makes ``cfg`` unbuildable after ``in_chs`` channels (None: nothing)."""
    if cfg.type == "conv_bn_act" and cfg.k < 1:
        return f"k must be >= 1, got {cfg.k}"
    if cfg.type == "mv2" and mv2_hidden_chs(in_chs, cfg.e) < 1:
        return f"e={cfg.e:g} gives {mv2_hidden_chs(in_chs, cfg.e)} hidden channels; use e > 0"
    if cfg.type == "mobilevit":
        if cfg.s != 1:
            return f"s must be 1 (a MobileViT block keeps the resolution; put a strided mv2 block before it), got {cfg.s}"
        if in_chs != cfg.c:
            return (f"c={cfg.c} but the block's input has {in_chs} channels (a MobileViT block keeps its "
                    f"channels; put an mv2 block with c={cfg.c} before it)")
        if cfg.t < 1 or cfg.h < 1 or cfg.p < 1:
            return f"t, h and p must be >= 1 (got t={cfg.t}, h={cfg.h}, p={cfg.p})"
        if cfg.width < 1 or cfg.width % cfg.h:
            return f"{cfg.h} heads do not divide the transformer width dim={cfg.width}; change h or dim"
        if cfg.ffn_dim < 1:
            return f"f={cfg.f:g} gives an FFN width of {cfg.ffn_dim}; use f > 0"
    return None


def iter_blocks(arch: ArchCfg) -> Iterator[tuple[int, int, BlockCfg, int, int]]:
    """The repeats of ``arch`` in execution order as ``(i, j, cfg, in_chs, stride)``: repeat ``j``
    of ``arch.blocks[i]`` (module ``stages.<i>.<j>`` of the built model). Raises
    :class:`ConfigError` naming ``blocks[i]`` for a block that cannot be built. The builder and
    the cost model both walk this."""
    if arch.stem_chs < 1 or arch.stem_stride < 1:
        raise ConfigError(f"stem: stem_chs and stem_stride must be >= 1 (got {arch.stem_chs}, {arch.stem_stride})")
    if arch.head_chs is not None and arch.head_chs < 1:
        raise ConfigError(f"head_chs: must be >= 1 or None, got {arch.head_chs}")
    in_chs = arch.stem_chs
    for i, cfg in enumerate(arch.blocks):
        if cfg.type not in BLOCKS:
            raise ConfigError(f"blocks[{i}].type: unknown block type {cfg.type!r}; choose one of {', '.join(BLOCKS)}")
        for j in range(cfg.d):
            problem = _problem(cfg, in_chs)
            if problem:
                raise ConfigError(f"blocks[{i}] ({cfg.type}): {problem}")
            yield i, j, cfg, in_chs, cfg.s if j == 0 else 1
            in_chs = cfg.c
