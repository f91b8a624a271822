"""A network as a sequence of measurable units: the stem, every block repeat, the head.

This is the decomposition behind the latency lookup table (LUT): each unit has a canonical
key (its type, its shape parameters, its input resolution and its in/out channels) and can be
built on its own with the same layers the model uses (``hytnas.models.blocks``), so a device
can time every distinct unit once and a network's latency is estimated as the sum over its
units.

Conventions:

- Inputs are square, batch 1, ``(1, in_chs, res, res)``; ``res`` is the unit's *input*
  resolution. A conv with kernel ``k``, padding ``k // 2`` and stride ``s`` outputs
  ``(res + 2 (k // 2) - k) // s + 1`` pixels.
- ``stage`` names where a unit sits: ``stem``, ``s1`` ... ``sN`` (``arch.blocks[N - 1]``) and
  ``head``. It is not part of the key (the same unit in two places is timed once).
- The key of a block repeat holds only the :class:`~hytnas.models.config.BlockCfg` fields that
  matter for its type (``e`` for ``mv2``; ``t, h, f, p, dim`` for ``mobilevit``; ``k`` for
  ``conv_bn_act``); an unknown type keeps them all.
"""
from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass, fields, replace

from torch import nn

from hytnas.models.config import ArchCfg, BlockCfg
from hytnas.space import Arch, Space

#: BlockCfg fields that shape each block type (besides in/out channels, stride, resolution)
_SHAPE_FIELDS: dict[str, tuple[str, ...]] = {
    "mv2": ("e",),
    "mobilevit": ("t", "h", "f", "p", "dim"),
    "conv_bn_act": ("k",),
    "dsconv": (),
}
#: genes that shape each stage of the HyT-NAS grammar (channels c_(s-1) -> c_s aside)
STAGE_GENES: dict[int, tuple[str, ...]] = {
    1: ("e1",),
    2: ("n2", "e2"),
    3: ("e3", "t3", "h3", "f3", "p3"),
    4: ("e4", "t4", "h4", "f4", "p4"),
    5: ("e5", "t5", "h5", "f5", "p5"),
}


def conv_out(res: int, k: int, stride: int) -> int:
    """Output size of a ``k x k`` conv with padding ``k // 2`` and stride ``stride``."""
    return (res + 2 * (k // 2) - k) // stride + 1


@dataclass(frozen=True)
class BlockSpec:
    """One measurable unit: ``kind`` is ``stem``, ``head`` or a block type of ``BLOCKS``."""

    kind: str
    stage: str
    in_chs: int
    out_chs: int
    res: int
    stride: int
    act: str
    cfg: BlockCfg | None = None  # block repeats: the BlockCfg (d = 1)
    num_classes: int = 0  # head only

    @property
    def out_res(self) -> int:
        if self.kind == "head":
            return 1
        if self.kind == "mobilevit":
            return self.res
        k = self.cfg.k if self.kind == "conv_bn_act" and self.cfg is not None else 3
        return conv_out(self.res, k, self.stride)

    @property
    def params(self) -> dict[str, int | float]:
        """The key's fields, in a fixed order."""
        d: dict[str, int | float] = {"in": self.in_chs, "out": self.out_chs, "res": self.res, "s": self.stride}
        if self.kind == "head":
            d["classes"] = self.num_classes
        elif self.cfg is not None:
            names = _SHAPE_FIELDS.get(self.kind, tuple(f.name for f in fields(BlockCfg) if f.name not in ("type", "c", "d", "s")))
            for name in names:
                v = self.cfg.width if name == "dim" else getattr(self.cfg, name)
                if v is not None:
                    d[name] = v
        return d

    @property
    def key(self) -> str:
        """Canonical key, e.g. ``mv2 in=16 out=24 res=112 s=2 e=4 act=silu``."""
        parts = [self.kind] + [f"{k}={_fmt(v)}" for k, v in self.params.items()] + [f"act={self.act}"]
        return " ".join(parts)

    @classmethod
    def from_key(cls, key: str) -> BlockSpec:
        """Inverse of :attr:`key` (``stage`` is unknown: ``"?"``)."""
        kind, *parts = key.split()
        try:
            kv = dict(p.split("=", 1) for p in parts)
            act = kv.pop("act")
            num = {k: float(v) for k, v in kv.items()}
            in_chs, out_chs, res, stride = (int(num.pop(k)) for k in ("in", "out", "res", "s"))
        except (KeyError, ValueError):
            raise ValueError(f"not a unit key: {key!r}") from None
        if kind == "head":
            return cls(kind, "?", in_chs, out_chs, res, stride, act, num_classes=int(num.pop("classes", 0)))
        if kind == "stem":
            return cls(kind, "?", in_chs, out_chs, res, stride, act)
        cfg = BlockCfg(kind, c=out_chs, d=1, s=stride, **num)
        return cls(kind, "?", in_chs, out_chs, res, stride, act, cfg=cfg)

    def build(self) -> nn.Module:
        """The unit as a module, in eval mode, with the model's own layers."""
        from hytnas.models.blocks import BLOCKS, ConvBnAct
        from hytnas.models.model import ClassifierHead

        if self.kind == "stem":
            module: nn.Module = ConvBnAct(self.in_chs, self.out_chs, 3, self.stride, act=self.act)
        elif self.kind == "head":  # out_chs: the 1x1 conv's width, -1 when there is none
            head_chs = self.out_chs if self.out_chs > 0 else None
            module = ClassifierHead(self.in_chs, head_chs, self.num_classes, self.act, 0.0)
        else:
            module = BLOCKS[self.kind](self.cfg, self.in_chs, self.stride, self.act)
        return module.eval()


def _fmt(v: int | float) -> str:
    return str(int(v)) if float(v).is_integer() else repr(float(v))


def arch_blocks(arch: ArchCfg, input_size: int, num_classes: int, in_channels: int = 3) -> list[BlockSpec]:
    """The units of ``arch`` in execution order (stem, block repeats, head)."""
    from hytnas.models.blocks import iter_blocks

    res = conv_out(int(input_size), 3, arch.stem_stride)
    out = [BlockSpec("stem", "stem", in_channels, arch.stem_chs, int(input_size), arch.stem_stride, arch.act)]
    chs = arch.stem_chs
    for i, _, cfg, in_chs, stride in iter_blocks(arch):
        spec = BlockSpec(cfg.type, f"s{i + 1}", in_chs, cfg.c, res, stride, arch.act, cfg=replace(cfg, d=1, s=stride))
        out.append(spec)
        res, chs = spec.out_res, cfg.c
    head_chs = arch.head_chs if arch.head_chs else -1
    out.append(_head_spec(chs, head_chs, res, arch.act, num_classes))
    return out


def _head_spec(in_chs: int, head_chs: int, res: int, act: str, num_classes: int) -> BlockSpec:
    """The head: ``out_chs`` is the 1x1 conv's width, ``-1`` when there is none."""
    return BlockSpec("head", "head", in_chs, head_chs, res, 1, act, num_classes=num_classes)


def stage_names(arch: ArchCfg) -> list[str]:
    return ["stem"] + [f"s{i + 1}" for i in range(len(arch.blocks))] + ["head"]


def space_block_specs(space: Space, *, input_size: int | None = None, num_classes: int = 10,
                      in_channels: int = 3) -> dict[str, BlockSpec]:
    """Every distinct unit any arch of ``space`` contains, by key (the full LUT of the space).

    The units of stage ``s`` depend only on the stage's genes (:data:`STAGE_GENES`) and the
    channel pair ``(c_(s-1), c_s)``, so the stages are enumerated one at a time over the distinct
    channel pairs the width chain produces, the other genes held at their first choice.
    """
    size = int(input_size or space.input_size)
    base = space.sample(1, seed=0)[0].to_dict()
    found: dict[str, BlockSpec] = {}
    for s, genes in STAGE_GENES.items():
        reps: dict[tuple[int, int], tuple[int, ...]] = {}
        for ct in space.channel_tuples:
            reps.setdefault((ct[s - 2] if s > 1 else 0, ct[s - 1]), ct)
        for ct in reps.values():
            for combo in itertools.product(*(space.choices[g] for g in genes)):
                a = dict(base, **dict(zip(("c1", "c2", "c3", "c4", "c5"), ct)), **dict(zip(genes, combo)))
                for spec in arch_blocks(space.to_arch_cfg(a), size, num_classes, in_channels):
                    found.setdefault(spec.key, spec)
    return found


def archs_block_specs(space: Space, archs: Iterable[Arch], *, input_size: int | None = None,
                      num_classes: int = 10, in_channels: int = 3) -> dict[str, BlockSpec]:
    """The distinct units of the given archs, by key."""
    size = int(input_size or space.input_size)
    found: dict[str, BlockSpec] = {}
    for a in archs:
        for spec in arch_blocks(space.to_arch_cfg(a), size, num_classes, in_channels):
            found.setdefault(spec.key, spec)
    return found
