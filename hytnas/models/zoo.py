"""Reference models written in the config language (no special cases in the builder or the
cost model): ``get(name) -> ArchCfg``, ``names()``.

Each config carries its published setting and figures in ``ArchCfg.meta``: ``input_size``,
``num_classes``, ``in_channels``, ``params_m`` / ``macs_m`` as published, and ``source``.

- ``mobilevit_xxs`` / ``_xs`` / ``_s``: MobileViT v1 (Mehta & Rastegari, ICLR 2022), the
  ml-cvnets configs: stem 16, stage 1 one MV2, stage 2 three MV2 (first strided), stages 3-5 a
  strided MV2 then a MobileViT block (4 heads, patch 2, FFN 2x), head 1x1 conv, SiLU.
- ``mobilenet_v1_025``: the MLPerf Tiny Visual Wake Words reference (MobileNetV1, width 0.25,
  96x96x3, 2 classes, ReLU, no head conv).
- ``mobilenet_v2_035``: MobileNetV2 at width 0.35 (channels ``make_divisible(c * 0.35, 8)``,
  last conv 1280, ReLU6), as in torchvision / TF-slim.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from hytnas.errors import ConfigError
from hytnas.models.config import ArchCfg, BlockCfg


def make_divisible(v: float, divisor: int = 8) -> int:
    """Round ``v`` to the nearest multiple of ``divisor`` without going 10 % below it (MobileNet)."""
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new_v + divisor if new_v < 0.9 * v else new_v


Meta = tuple[tuple[str, Any], ...]


def _meta(input_size: int, num_classes: int, params_m: float, macs_m: float, source: str) -> Meta:
    return (("input_size", input_size), ("num_classes", num_classes), ("in_channels", 3),
            ("params_m", params_m), ("macs_m", macs_m), ("source", source))


def _mobilevit(name: str, chs: Sequence[int], e: float, dims: Sequence[int], depths: Sequence[int],
               head: int, params_m: float, macs_m: float) -> ArchCfg:
    stem, c1, c2, *c345 = chs
    blocks = [BlockCfg("mv2", c1, e=e), BlockCfg("mv2", c2, d=3, s=2, e=e)]
    for c, dim, t in zip(c345, dims, depths):
        blocks += [BlockCfg("mv2", c, s=2, e=e), BlockCfg("mobilevit", c, t=t, h=4, f=2.0, p=2, dim=dim)]
    return ArchCfg(tuple(blocks), stem_chs=stem, stem_stride=2, head_chs=head, act="silu", name=name,
                   meta=_meta(256, 1000, params_m, macs_m, "Mehta & Rastegari, MobileViT (ICLR 2022); "
                              "ml-cvnets configs; MACs as listed by timm"))


def mobilevit_xxs() -> ArchCfg:
    return _mobilevit("mobilevit_xxs", (16, 16, 24, 48, 64, 80), 2, (64, 80, 96), (2, 4, 3), 320, 1.3, 400)


def mobilevit_xs() -> ArchCfg:
    return _mobilevit("mobilevit_xs", (16, 32, 48, 64, 80, 96), 4, (96, 120, 144), (2, 4, 3), 384, 2.3, 1100)


def mobilevit_s() -> ArchCfg:
    return _mobilevit("mobilevit_s", (16, 32, 64, 96, 128, 160), 4, (144, 192, 240), (2, 4, 3), 640, 5.6, 2000)


def mobilenet_v1_025() -> ArchCfg:
    w = lambda c: int(c * 0.25)  # noqa: E731  (all widths are multiples of 4)
    plan = [(64, 1, 1), (128, 1, 2), (128, 1, 1), (256, 1, 2), (256, 1, 1), (512, 1, 2), (512, 5, 1),
            (1024, 1, 2), (1024, 1, 1)]  # (channels at width 1, repeats, stride): 13 blocks
    blocks = tuple(BlockCfg("dsconv", w(c), d=d, s=s) for c, d, s in plan)
    return ArchCfg(blocks, stem_chs=w(32), stem_stride=2, head_chs=None, act="relu", name="mobilenet_v1_025",
                   meta=_meta(96, 2, 0.21, 7.5, "MLPerf Tiny v0.5 Visual Wake Words reference (Banbury et al., 2021)"))


def mobilenet_v2_035() -> ArchCfg:
    plan = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
            (6, 320, 1, 1)]  # (expand, channels at width 1, repeats, stride), Sandler et al. Table 2
    blocks = tuple(BlockCfg("mv2", make_divisible(c * 0.35), d=n, s=s, e=t) for t, c, n, s in plan)
    return ArchCfg(blocks, stem_chs=make_divisible(32 * 0.35), stem_stride=2, head_chs=1280, act="relu6",
                   name="mobilenet_v2_035",
                   meta=_meta(224, 1000, 1.66, 59, "Sandler et al., MobileNetV2 (CVPR 2018); TF-slim table, width 0.35"))


_ZOO: dict[str, Callable[[], ArchCfg]] = {
    f.__name__: f for f in (mobilevit_xxs, mobilevit_xs, mobilevit_s, mobilenet_v1_025, mobilenet_v2_035)
}


def names() -> list[str]:
    """The zoo's model names."""
    return list(_ZOO)


def get(name: str) -> ArchCfg:
    """The :class:`ArchCfg` of zoo model ``name``; :class:`ConfigError` naming the choices otherwise."""
    try:
        return _ZOO[name]()
    except KeyError:
        raise ConfigError(f"zoo: unknown model {name!r}; choose one of {', '.join(_ZOO)}") from None


def info(name: str) -> dict[str, Any]:
    """The published setting and figures of zoo model ``name`` (its ``ArchCfg.meta`` as a dict)."""
    return dict(get(name).meta)
