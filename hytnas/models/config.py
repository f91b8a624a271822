"""The model config language (after timm's ByobNet ``ByoModelCfg``/``ByoBlockCfg``).

An :class:`ArchCfg` is a stem, a tuple of :class:`BlockCfg` (each one block type repeated ``d``
times, the first repeat carrying the stride) and a head. Everything a model is built from is in
these frozen dataclasses, so that the builder (``hytnas.models.build_model``) and the analytic
cost model (``hytnas.costs``) read the same description.

Block types (see ``hytnas.models.blocks.BLOCKS``):

- ``conv_bn_act``: k x k conv, BN, activation (``k`` = kernel size).
- ``dsconv``: MobileNetV1 depthwise-separable conv (dw 3x3 + BN + act, pw 1x1 + BN + act).
- ``mv2``: MobileNetV2 inverted residual (1x1 expand by ``e`` (skipped when e == 1), dw 3x3,
  1x1 linear projection; identity shortcut when stride 1 and in == out channels).
- ``mobilevit``: MobileViT block: local 3x3 conv + 1x1 to transformer width ``dim``, unfold into
  ``p x p`` patches, ``t`` pre-norm transformer layers (``h`` heads, FFN ratio ``f``), fold,
  1x1 projection back to ``c``, concat with the block input and fuse with a 3x3 conv.
  The block keeps its channel count (input channels == ``c``) and has stride 1.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from hytnas.errors import ConfigError

ACTIVATIONS = ("silu", "relu", "relu6", "hardswish", "gelu")


def largest_pow2_le(c: int) -> int:
    """The largest power of two <= c (the transformer width rule of the HyT-NAS space)."""
    if c < 1:
        raise ConfigError(f"channels must be >= 1, got {c}")
    return 1 << (int(c).bit_length() - 1)


@dataclass(frozen=True)
class BlockCfg:
    """One stage of ``d`` repeats of a block type (timm's ``ByoBlockCfg``)."""

    type: str
    c: int  # output channels
    d: int = 1  # repeats; the first carries the stride
    s: int = 1  # stride of the first repeat
    e: float = 1.0  # mv2: expand ratio
    k: int = 3  # conv_bn_act: kernel size
    # mobilevit only
    t: int = 0  # transformer layers
    h: int = 1  # attention heads
    f: float = 2.0  # FFN ratio: ffn_dim = round(f * dim)
    p: int = 2  # patch size (p x p)
    dim: int | None = None  # transformer width; None -> largest power of two <= c

    def __post_init__(self) -> None:
        # canonical number types, so that identical blocks hash identically (2 == 2.0 -> 2.0)
        for name in ("c", "d", "s", "k", "t", "h", "p"):
            v = getattr(self, name)
            if int(v) != v:
                raise ConfigError(f"block {self.type}: {name} must be an integer, got {v!r}")
            object.__setattr__(self, name, int(v))
        for name in ("e", "f"):
            object.__setattr__(self, name, float(getattr(self, name)))
        if self.dim is not None:
            object.__setattr__(self, "dim", int(self.dim))
        if self.c < 1 or self.d < 1 or self.s < 1:
            raise ConfigError(f"block {self.type}: c, d and s must be >= 1 (got c={self.c}, d={self.d}, s={self.s})")

    @property
    def width(self) -> int:
        """Transformer width of a mobilevit block."""
        return self.dim if self.dim is not None else largest_pow2_le(self.c)

    @property
    def ffn_dim(self) -> int:
        return int(round(self.f * self.width))


@dataclass(frozen=True)
class ArchCfg:
    """A whole network: stem conv, blocks, head (1x1 conv, global pool, linear)."""

    blocks: tuple[BlockCfg, ...]
    stem_chs: int = 16
    stem_stride: int = 2
    head_chs: int | None = None  # 1x1 conv before the pool; None: pool straight after the blocks
    act: str = "silu"
    name: str = ""
    meta: tuple[tuple[str, Any], ...] = field(default=(), compare=False, hash=False)

    def __post_init__(self) -> None:
        if self.act not in ACTIVATIONS:
            raise ConfigError(f"act: unknown activation {self.act!r}; choose one of {', '.join(ACTIVATIONS)}")
        object.__setattr__(self, "blocks", tuple(self.blocks))

    @property
    def out_chs(self) -> int:
        return self.blocks[-1].c if self.blocks else self.stem_chs

    def to_dict(self) -> dict[str, Any]:
        """Canonical plain dict (no name/meta): identical models give identical dicts."""
        d = asdict(self)
        d.pop("name")
        d.pop("meta")
        d["blocks"] = [{k: v for k, v in b.items()} for b in d["blocks"]]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ArchCfg:
        d = dict(d)
        blocks = tuple(BlockCfg(**b) for b in d.pop("blocks"))
        return cls(blocks=blocks, **d)

    @property
    def arch_id(self) -> str:
        """Stable 12-hex-digit hash of the canonical config, for de-duplication."""
        blob = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"), default=_canon)
        return hashlib.sha1(blob.encode()).hexdigest()[:12]

    def with_name(self, name: str) -> ArchCfg:
        return replace(self, name=name)


def _canon(x: Any) -> Any:
    raise TypeError(f"not JSON-serialisable in ArchCfg: {x!r}")
