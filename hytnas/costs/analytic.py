"""Exact analytic costs of an :class:`~hytnas.models.config.ArchCfg`: parameters, MACs, peak
activation memory and model size, without building the model.

Counting conventions
--------------------

- **Params**: trainable parameters, ``sum(p.numel())`` of the built model (BatchNorm and
  LayerNorm weight and bias included, running statistics excluded).
- **MACs**: one multiply-add = one MAC; exactly what ``torch.utils.flop_counter`` counts divided
  by 2 (see :func:`hytnas.costs.measured.traced_macs`): convolutions ``H_out W_out C_out
  (C_in / groups) k^2``, linear layers ``tokens x in x out`` and the two attention matmuls
  ``QK^T`` and ``AV`` (``2 x seqs x N^2 x dim``). Biases, BatchNorm, LayerNorm, activations,
  softmax, adds, pooling and the bilinear resize are not counted.
- **Peak activation memory** (MCUNet convention, batch 1): the network is a sequence of ops
  (:class:`Op`); at each op the live memory is its input(s) + its output + the tensors *held*
  for a later residual add or concat. The peak is the largest live sum over the sequence, in
  elements; int8 is 1 byte per element, fp32 4 bytes. The sequence:

  - conv (BN folded, activation applied in place): one op ``conv``;
  - MV2 with shortcut: the block input is held from the end of its first conv to the add;
    the add is an op ``add`` (in = both summands, out = 0: written in place);
  - MobileViT block: the block input is held until the fusion conv; ``conv_kxk``, ``conv_1x1``,
    ``resize`` (only when the map is not a multiple of ``p``), then per transformer layer
    ``norm1`` (LayerNorm, in -> out), ``qkv`` (in L, out 3L; the layer input held for the
    residual), ``attn.qk`` (in q and k, out the ``heads x N x N`` scores of every sequence, v
    held), ``attn.av`` (in scores and v, out L), ``proj``, ``add``, ``norm2``, ``fc1``, ``fc2``,
    ``add``; then ``norm``, ``resize`` back, ``conv_proj``; the concat is free (the producers
    write into halves of one buffer), so ``conv_fusion`` reads ``2C x H x W``. Unfold and fold
    are re-indexing only (no op); softmax and activations are in place.
  - head: ``head.conv``, ``head.pool`` (in C x H x W, out C), ``head.fc``.

Names of ``conv`` / ``linear`` ops are the module paths of the built model (``stages.3.0.dw``),
so a trace can be compared with forward hooks.
"""
from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from typing import Any, NamedTuple

from hytnas.errors import ConfigError
from hytnas.models.blocks import iter_blocks, mv2_hidden_chs, patch_grid
from hytnas.models.config import ArchCfg, BlockCfg


class Op(NamedTuple):
    """One op of the memory trace; element counts at batch 1."""

    kind: str  # conv | linear | matmul | norm | resize | add | pool
    name: str  # module path in the built model (conv, linear, norm), or a descriptive path
    in_elems: int  # all inputs together
    out_elems: int  # 0: written in place into an input
    held_elems: int  # tensors kept alive for a later add / concat, not inputs of this op

    @property
    def live_elems(self) -> int:
        return self.in_elems + self.out_elems + self.held_elems


class Tally:
    """Accumulates params, MACs and the memory peak over a walk of the network.

    Block cost functions call :meth:`conv`, :meth:`linear`, :meth:`norm`, :meth:`attention`,
    :meth:`op` and adjust :attr:`held` around residual branches. ``trace=True`` records every
    :class:`Op` in :attr:`ops` (off for speed in searches)."""

    __slots__ = ("params", "macs", "peak", "held", "ops")

    def __init__(self, trace: bool = False) -> None:
        self.params = 0
        self.macs = 0
        self.peak = 0
        self.held = 0
        self.ops: list[Op] | None = [] if trace else None

    def op(self, kind: str, name: str, in_elems: int, out_elems: int) -> None:
        live = in_elems + out_elems + self.held
        if live > self.peak:
            self.peak = live
        if self.ops is not None:
            self.ops.append(Op(kind, name, in_elems, out_elems, self.held))

    def conv(self, name: str, cin: int, cout: int, k: int, stride: int, hw: tuple[int, int],
             groups: int = 1, bn: bool = True) -> tuple[int, int]:
        """``k x k`` conv with padding ``k // 2`` (no bias; BatchNorm when ``bn``); returns the output size."""
        h, w = hw
        ho = (h + 2 * (k // 2) - k) // stride + 1
        wo = (w + 2 * (k // 2) - k) // stride + 1
        weights = cout * (cin // groups) * k * k
        self.params += weights + (2 * cout if bn else 0)
        self.macs += ho * wo * weights
        self.op("conv", name, cin * h * w, cout * ho * wo)
        return ho, wo

    def linear(self, name: str, tokens: int, fin: int, fout: int) -> None:
        """Linear layer with bias over ``tokens`` rows."""
        self.params += fin * fout + fout
        self.macs += tokens * fin * fout
        self.op("linear", name, tokens * fin, tokens * fout)

    def norm(self, name: str, tokens: int, dim: int) -> None:
        """LayerNorm (weight and bias) over ``tokens`` rows."""
        self.params += 2 * dim
        self.op("norm", name, tokens * dim, tokens * dim)

    def attention(self, name: str, seqs: int, n: int, dim: int, heads: int) -> None:
        """The attention core between ``qkv`` and ``proj``: ``QK^T`` then ``AV`` (no params)."""
        L = seqs * n * dim
        self.macs += 2 * seqs * n * n * dim
        scores = seqs * heads * n * n
        self.held += L  # v waits for the second matmul
        self.op("matmul", f"{name}.qk", 2 * L, scores)
        self.held -= L
        self.op("matmul", f"{name}.av", scores + L, L)


# ----------------------------------------------------------------------------- block costs
BlockCostFn = Callable[[Tally, str, BlockCfg, int, int, tuple[int, int]], tuple[int, int]]


def _conv_bn_act(t: Tally, name: str, cfg: BlockCfg, in_chs: int, stride: int, hw: tuple[int, int]) -> tuple[int, int]:
    return t.conv(f"{name}.conv", in_chs, cfg.c, cfg.k, stride, hw)


def _dsconv(t: Tally, name: str, cfg: BlockCfg, in_chs: int, stride: int, hw: tuple[int, int]) -> tuple[int, int]:
    hw = t.conv(f"{name}.dw.conv", in_chs, in_chs, 3, stride, hw, groups=in_chs)
    return t.conv(f"{name}.pw.conv", in_chs, cfg.c, 1, 1, hw)


def _mv2(t: Tally, name: str, cfg: BlockCfg, in_chs: int, stride: int, hw: tuple[int, int]) -> tuple[int, int]:
    hidden = mv2_hidden_chs(in_chs, cfg.e)
    skip = stride == 1 and in_chs == cfg.c
    x = in_chs * hw[0] * hw[1]
    convs = [(f"{name}.expand.conv", in_chs, hidden, 1, 1, 1)] if cfg.e != 1 else []
    convs += [(f"{name}.dw.conv", hidden, hidden, 3, stride, hidden), (f"{name}.project.conv", hidden, cfg.c, 1, 1, 1)]
    for i, (cname, cin, cout, k, s, groups) in enumerate(convs):
        hw = t.conv(cname, cin, cout, k, s, hw, groups=groups)
        if i == 0 and skip:
            t.held += x  # the block input waits for the shortcut add
    if skip:
        t.held -= x
        t.op("add", f"{name}.add", 2 * x, 0)
    return hw


def _mobilevit(t: Tally, name: str, cfg: BlockCfg, in_chs: int, stride: int, hw: tuple[int, int]) -> tuple[int, int]:
    c, dim, p = cfg.c, cfg.width, cfg.p
    h, w = hw
    x = c * h * w
    t.conv(f"{name}.conv_kxk.conv", c, c, 3, 1, hw)
    t.held += x  # the block input waits for the fusion concat
    t.conv(f"{name}.conv_1x1", c, dim, 1, 1, hw, bn=False)
    hp, wp = patch_grid(h, w, p)
    if (hp, wp) != (h, w):
        t.op("resize", f"{name}.resize_in", dim * h * w, dim * hp * wp)
    seqs, n = p * p, (hp // p) * (wp // p)
    tokens, L = seqs * n, dim * hp * wp
    for i in range(cfg.t):
        lname = f"{name}.transformer.{i}"
        t.norm(f"{lname}.norm1", tokens, dim)
        t.held += L  # the layer input waits for the residual add
        t.linear(f"{lname}.attn.qkv", tokens, dim, 3 * dim)
        t.attention(f"{lname}.attn", seqs, n, dim, cfg.h)
        t.linear(f"{lname}.attn.proj", tokens, dim, dim)
        t.held -= L
        t.op("add", f"{lname}.add1", 2 * L, 0)
        t.norm(f"{lname}.norm2", tokens, dim)
        t.held += L
        t.linear(f"{lname}.mlp.fc1", tokens, dim, cfg.ffn_dim)
        t.linear(f"{lname}.mlp.fc2", tokens, cfg.ffn_dim, dim)
        t.held -= L
        t.op("add", f"{lname}.add2", 2 * L, 0)
    t.norm(f"{name}.norm", tokens, dim)
    if (hp, wp) != (h, w):
        t.op("resize", f"{name}.resize_out", L, dim * h * w)
    t.conv(f"{name}.conv_proj.conv", dim, c, 1, 1, hw)
    t.held -= x
    return t.conv(f"{name}.conv_fusion.conv", 2 * c, c, 3, 1, hw)


#: block type -> cost function ``(tally, name, cfg, in_chs, stride, (h, w)) -> (h_out, w_out)``;
#: the same keys as :data:`hytnas.models.blocks.BLOCKS` (one cost function per builder)
BLOCK_COSTS: dict[str, BlockCostFn] = {
    "conv_bn_act": _conv_bn_act,
    "dsconv": _dsconv,
    "mv2": _mv2,
    "mobilevit": _mobilevit,
}


# ------------------------------------------------------------------------------ whole arch
@lru_cache(maxsize=1 << 16)
def _block_summary(cfg: BlockCfg, in_chs: int, stride: int, hw: tuple[int, int]) -> tuple[int, int, int, int, tuple[int, int]]:
    """``(params, macs, peak, held, out_hw)`` of one block walked on its own (nothing held on
    entry). Block cost functions are pure functions of these arguments."""
    t = Tally()
    out = BLOCK_COSTS[cfg.type](t, "block", cfg, in_chs, stride, hw)
    return t.params, t.macs, t.peak, t.held, out


def _check(input_size: Any, num_classes: Any, in_channels: Any) -> None:
    for name, value in (("input_size", input_size), ("num_classes", num_classes), ("in_channels", in_channels)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{name}: must be an integer >= 1, got {value!r}")


def tally(arch: ArchCfg, input_size: int, num_classes: int, in_channels: int = 3, trace: bool = False) -> Tally:
    """Walk ``arch`` at ``input_size x input_size`` (batch 1) and return the filled :class:`Tally`."""
    _check(input_size, num_classes, in_channels)
    t = Tally(trace)
    hw = t.conv("stem.conv", in_channels, arch.stem_chs, 3, arch.stem_stride, (input_size, input_size))
    for i, j, cfg, in_chs, stride in iter_blocks(arch):
        if trace:
            hw = BLOCK_COSTS[cfg.type](t, f"stages.{i}.{j}", cfg, in_chs, stride, hw)
            continue
        # the same block at the same input shape costs the same: replay its summary (a search
        # costs thousands of archs built from a few hundred distinct blocks)
        params, macs, peak, held, hw = _block_summary(cfg, in_chs, stride, hw)
        t.params += params
        t.macs += macs
        t.peak = max(t.peak, peak + t.held)  # every op's live memory counts the tensors held outside
        t.held += held
    chs = arch.out_chs
    if arch.head_chs is not None:
        hw = t.conv("head.conv.conv", chs, arch.head_chs, 1, 1, hw)
        chs = arch.head_chs
    t.op("pool", "head.pool", chs * hw[0] * hw[1], chs)
    t.linear("head.fc", 1, chs, num_classes)
    return t


def count_params(arch: ArchCfg, input_size: int, num_classes: int, in_channels: int = 3) -> int:
    """Trainable parameters of ``build_model(arch, num_classes, in_channels)`` (any input size)."""
    return tally(arch, input_size, num_classes, in_channels).params


def count_macs(arch: ArchCfg, input_size: int, num_classes: int, in_channels: int = 3) -> int:
    """Multiply-accumulates of one forward pass at batch 1 (``flop_counter`` FLOPs / 2)."""
    return tally(arch, input_size, num_classes, in_channels).macs


def peak_memory(arch: ArchCfg, input_size: int, num_classes: int, in_channels: int = 3,
                bytes_per_elem: int = 1) -> int:
    """Peak activation memory in bytes (MCUNet convention, batch 1; 1 byte int8, 4 fp32)."""
    return tally(arch, input_size, num_classes, in_channels).peak * bytes_per_elem


def model_size(arch: ArchCfg, input_size: int, num_classes: int, in_channels: int = 3,
               bytes_per_param: int = 1) -> int:
    """Model size in bytes: params x 1 (int8) or x 4 (fp32)."""
    return count_params(arch, input_size, num_classes, in_channels) * bytes_per_param


def op_trace(arch: ArchCfg, input_size: int, num_classes: int, in_channels: int = 3) -> list[Op]:
    """The op sequence the peak memory is taken over (see the module docstring)."""
    ops = tally(arch, input_size, num_classes, in_channels, trace=True).ops
    assert ops is not None
    return ops


def arch_costs(arch: ArchCfg, input_size: int, num_classes: int, in_channels: int = 3) -> dict[str, int | float]:
    """All cost metrics of ``arch`` in one walk: the ``hytnas.objectives.COST_METRICS`` keys
    (``params_k`` = params / 1000, ``macs_m`` = MACs / 1e6, ``*_kb`` = bytes / 1024) and the raw
    integers ``params``, ``macs``, ``peak_sram_bytes``, ``peak_sram_fp32_bytes``."""
    t = tally(arch, input_size, num_classes, in_channels)
    return {
        "params_k": t.params / 1000,
        "macs_m": t.macs / 1e6,
        "peak_sram_kb": t.peak / 1024,
        "peak_sram_fp32_kb": 4 * t.peak / 1024,
        "model_size_kb": t.params / 1024,
        "model_size_fp32_kb": 4 * t.params / 1024,
        "params": t.params,
        "macs": t.macs,
        "peak_sram_bytes": t.peak,
        "peak_sram_fp32_bytes": 4 * t.peak,
    }
