"""``build_model``: an :class:`~hytnas.models.config.ArchCfg` as a PyTorch classifier.

Layout (module paths, which the cost model's op trace uses as names)::

    stem            3x3 conv-BN-act, stride arch.stem_stride
    stages.<i>.<j>  repeat j of arch.blocks[i] (hytnas.models.blocks.BLOCKS)
    head.conv       1x1 conv-BN-act to arch.head_chs (absent when head_chs is None)
    head.pool       global average pool
    head.drop       dropout
    head.fc         Linear(channels, num_classes)
"""
from __future__ import annotations

import torch
from torch import nn

from hytnas.errors import ConfigError
from hytnas.models.blocks import BLOCKS, ConvBnAct, iter_blocks
from hytnas.models.config import ArchCfg


class ClassifierHead(nn.Module):
    """Optional 1x1 conv-BN-act, global average pool, dropout, linear classifier."""

    def __init__(self, in_chs: int, head_chs: int | None, num_classes: int, act: str, dropout: float) -> None:
        super().__init__()
        self.conv = ConvBnAct(in_chs, head_chs, 1, act=act) if head_chs else nn.Identity()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.drop = nn.Dropout(dropout)
        self.fc = nn.Linear(head_chs or in_chs, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.conv(x)).flatten(1)  # (B, C, H, W) -> (B, C_head)
        return self.fc(self.drop(x))  # (B, num_classes)


class HybridNet(nn.Module):
    """Stem, stages of blocks, classifier head. ``arch``, ``num_classes``, ``in_channels`` and
    ``input_size`` are recorded as attributes; the network runs at any input size."""

    def __init__(self, arch: ArchCfg, num_classes: int, in_channels: int, input_size: int, dropout: float) -> None:
        super().__init__()
        self.arch, self.num_classes, self.in_channels, self.input_size = arch, num_classes, in_channels, input_size
        self.stem = ConvBnAct(in_channels, arch.stem_chs, 3, arch.stem_stride, act=arch.act)
        stages: list[list[nn.Module]] = [[] for _ in arch.blocks]
        for i, _, cfg, in_chs, stride in iter_blocks(arch):
            stages[i].append(BLOCKS[cfg.type](cfg, in_chs, stride, arch.act))
        self.stages = nn.Sequential(*[nn.Sequential(*blocks) for blocks in stages])
        self.head = ClassifierHead(arch.out_chs, arch.head_chs, num_classes, arch.act, dropout)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.stages(self.stem(x))  # (B, C_in, H, W) -> (B, C_out, H / 32, W / 32)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward_features(x))  # (B, num_classes)


def _check_int(name: str, value: object, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ConfigError(f"{name}: must be an integer >= {low}, got {value!r}")
    return value


def build_model(arch: ArchCfg, num_classes: int, in_channels: int = 3, input_size: int = 224,
                dropout: float = 0.0) -> nn.Module:
    """The classifier described by ``arch`` (freshly initialised, train mode).

    ``input_size`` is validated and recorded (``model.input_size``), not baked in: the model runs
    at any input size (MobileViT blocks resize feature maps that are not multiples of the patch).
    Raises :class:`~hytnas.errors.ConfigError` naming the field for an unbuildable config.
    """
    if not isinstance(arch, ArchCfg):
        raise ConfigError(f"arch: expected an ArchCfg, got {type(arch).__name__}")
    _check_int("num_classes", num_classes, 1)
    _check_int("in_channels", in_channels, 1)
    _check_int("input_size", input_size, 1)
    if not 0.0 <= float(dropout) < 1.0:
        raise ConfigError(f"dropout: must be in [0, 1), got {dropout!r}")
    return HybridNet(arch, num_classes, in_channels, input_size, float(dropout))
