"""Training settings of a candidate: one frozen dataclass, validated, plain-dict round trip."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any, Mapping

from hytnas.errors import ConfigError

#: Optimisers :class:`TrainSettings` accepts (``configure_optimizers`` builds them).
OPTIMIZERS: tuple[str, ...] = ("adamw", "adam", "sgd")
#: Lightning precisions accepted; mixed precision is used on a GPU only (full precision on CPU).
PRECISIONS: tuple[str, ...] = ("32-true", "bf16-mixed", "16-mixed")


@dataclass(frozen=True)
class TrainSettings:
    """How every candidate is trained (the ``training`` section of the experiment YAML).

    Conventions: ``lr`` is the initial learning rate, multiplied by ``lr_decay`` after every
    epoch (``ExponentialLR``, the HyT-NAS paper's schedule). ``weight_decay`` applies to conv and
    linear weights only, not to biases and norm parameters (timm's convention). ``precision``
    ``None`` means ``"32-true"``; mixed precision and ``channels_last`` take effect on a GPU only.
    ``seed`` seeds the weight initialisation and the training-time randomness (dropout), through
    local generators (global RNG state is restored afterwards). ``batch_size`` overrides the
    datamodule's in :func:`hytnas.training.train_candidate`. ``momentum`` is used by ``sgd``
    (Nesterov when > 0).
    """

    epochs: int = 3
    batch_size: int = 128
    optimizer: str = "adam"
    lr: float = 0.002
    lr_decay: float = 0.95
    weight_decay: float = 0.0
    label_smoothing: float = 0.0
    precision: str | None = "32-true"
    channels_last: bool = False
    seed: int = 0
    momentum: float = 0.9
    dropout: float = 0.0

    def __post_init__(self) -> None:
        for name, low in (("epochs", 1), ("batch_size", 1), ("seed", 0)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < low:
                raise ConfigError(f"training.{name}: must be an integer >= {low}, got {v!r}")
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"training.optimizer: {self.optimizer!r} is not one of {', '.join(OPTIMIZERS)}")
        if self.precision is None:
            object.__setattr__(self, "precision", "32-true")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"training.precision: {self.precision!r} is not one of {', '.join(PRECISIONS)}")
        for name, lo, hi, lo_open, hi_open in (
            ("lr", 0.0, math.inf, True, True),
            ("lr_decay", 0.0, 1.0, True, False),
            ("weight_decay", 0.0, math.inf, False, True),
            ("label_smoothing", 0.0, 1.0, False, True),
            ("momentum", 0.0, 1.0, False, True),
            ("dropout", 0.0, 1.0, False, True),
        ):
            v = getattr(self, name)
            ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
            ok = ok and (v > lo if lo_open else v >= lo) and (v < hi if hi_open else v <= hi)
            if not ok:
                rng = f"{'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"
                raise ConfigError(f"training.{name}: must be a number in {rng}, got {v!r}")
        if not isinstance(self.channels_last, bool):
            raise ConfigError(f"training.channels_last: must be true or false, got {self.channels_last!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "TrainSettings":
        """Settings from a mapping; unknown keys are a :class:`ConfigError` naming the key."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ConfigError(f"training.{unknown[0]}: unknown setting; use {', '.join(sorted(names))}")
        return cls(**dict(d))
