"""Objectives and constraints, declared once.

Every metric the platform optimises has a name with its unit, a sense (``max``/``min``) and a
source:

- ``reported``: comes from the trial's results (``val_accuracy``, a latency measured in the trial)
  and is modelled by a surrogate;
- ``known``: computed exactly from the arch for every candidate (``params_k``, ``macs_m``,
  ``peak_sram_kb``, ``model_size_kb``, or a latency predictor of a device profile); never modelled.

:func:`to_maximize` is the one place that flips signs: internally every objective is maximised.
"""
from __future__ import annotations

import math
import operator
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch

from hytnas.errors import ConfigError

SENSES = ("max", "min")
SOURCES = ("reported", "known")


@dataclass(frozen=True)
class Objective:
    name: str
    sense: str  # "max" | "min"
    source: str  # "reported" | "known"
    unit: str = ""
    description: str = ""

    def __post_init__(self) -> None:
        if self.sense not in SENSES:
            raise ConfigError(f"objective {self.name}: sense must be 'max' or 'min', got {self.sense!r}")
        if self.source not in SOURCES:
            raise ConfigError(f"objective {self.name}: source must be 'reported' or 'known', got {self.source!r}")

    @property
    def sign(self) -> float:
        return 1.0 if self.sense == "max" else -1.0


#: Known metrics of the platform. ``source`` is the default; ``latency_ms`` is ``reported``
#: (measured in the trial) unless a device profile makes it ``known`` (LUT / learned predictor).
METRICS: dict[str, Objective] = {
    o.name: o
    for o in (
        Objective("val_accuracy", "max", "reported", "fraction", "top-1 accuracy on the validation split"),
        Objective("test_accuracy", "max", "reported", "fraction", "top-1 accuracy on the test split"),
        Objective("val_loss", "min", "reported", "nats", "cross-entropy on the validation split"),
        Objective("latency_ms", "min", "reported", "ms", "batch-1 inference latency (median)"),
        Objective("params_k", "min", "known", "k params", "trainable parameters / 1000"),
        Objective("macs_m", "min", "known", "M MACs", "multiply-accumulates / 1e6 (1 multiply-add = 1 MAC)"),
        Objective("peak_sram_kb", "min", "known", "kB", "int8 peak activation memory (MCUNet convention) / 1024"),
        Objective("peak_sram_fp32_kb", "min", "known", "kB", "fp32 peak activation memory / 1024"),
        Objective("model_size_kb", "min", "known", "kB", "int8 model size / 1024"),
        Objective("model_size_fp32_kb", "min", "known", "kB", "fp32 model size / 1024"),
    )
}

#: The metrics the exact cost model computes (``hytnas.costs.arch_costs`` keys).
COST_METRICS = ("params_k", "macs_m", "peak_sram_kb", "peak_sram_fp32_kb", "model_size_kb", "model_size_fp32_kb")


def get_objective(spec: str | Mapping[str, Any] | Objective) -> Objective:
    """An :class:`Objective` from a name (``"val_accuracy"``), ``"name:min"`` or a mapping
    ``{name, sense?, source?, unit?}``. Unknown names need an explicit sense."""
    if isinstance(spec, Objective):
        return spec
    if isinstance(spec, str):
        name, _, sense = spec.partition(":")
        spec = {"name": name.strip()} | ({"sense": sense.strip()} if sense else {})
    spec = dict(spec)
    name = spec.pop("name", None)
    if not name or not isinstance(name, str):
        raise ConfigError("objectives: each objective needs a name (e.g. val_accuracy, latency_ms, params_k)")
    unknown = set(spec) - {"sense", "source", "unit", "description"}
    if unknown:
        raise ConfigError(f"objectives.{name}: unknown field {sorted(unknown)[0]!r} (use sense, source, unit)")
    base = METRICS.get(name)
    if base is None:
        if "sense" not in spec:
            raise ConfigError(
                f"objectives.{name}: unknown metric; give its sense (max or min), or use one of {', '.join(METRICS)}"
            )
        return Objective(name=name, sense=spec["sense"], source=spec.get("source", "reported"),
                         unit=spec.get("unit", ""), description=spec.get("description", ""))
    if "source" in spec and spec["source"] == "known" and name not in COST_METRICS and name != "latency_ms":
        raise ConfigError(f"objectives.{name}: cannot be a known objective (it is measured by training)")
    return replace(base, **spec)


def get_objectives(specs: Iterable[str | Mapping[str, Any] | Objective]) -> tuple[Objective, ...]:
    objs = tuple(get_objective(s) for s in specs)
    names = [o.name for o in objs]
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise ConfigError(f"objectives: {dup} is listed twice")
    if not objs:
        raise ConfigError("objectives: give at least one objective")
    return objs


def to_maximize(Y: torch.Tensor, objectives: Sequence[Objective]) -> torch.Tensor:
    """Flip the sign of ``min`` objectives (columns of ``Y``): the one place signs are flipped."""
    signs = torch.tensor([o.sign for o in objectives], dtype=Y.dtype, device=Y.device)
    return Y * signs


def from_maximize(Y: torch.Tensor, objectives: Sequence[Objective]) -> torch.Tensor:
    """Inverse of :func:`to_maximize` (the flip is its own inverse)."""
    return to_maximize(Y, objectives)


# --------------------------------------------------------------------------- constraints
_OPS = {"<=": operator.le, ">=": operator.ge, "<": operator.lt, ">": operator.gt}
_CONSTRAINT_RE = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(<=|>=|<|>)\s*([-+0-9.eE]+)\s*$")


@dataclass(frozen=True)
class Constraint:
    """``metric op value``, e.g. ``peak_sram_kb <= 256``."""

    name: str
    op: str
    value: float

    def __post_init__(self) -> None:
        if self.op not in _OPS:
            raise ConfigError(f"constraint {self.name}: operator must be one of <=, >=, <, >; got {self.op!r}")
        if not math.isfinite(self.value):
            raise ConfigError(f"constraint {self.name}: bound must be a finite number")

    def ok(self, x: float) -> bool:
        return bool(_OPS[self.op](x, self.value))

    @property
    def upper(self) -> bool:
        return self.op in ("<=", "<")

    def slack(self, x: torch.Tensor) -> torch.Tensor:
        """BoTorch convention: feasible where the returned value is <= 0."""
        return x - self.value if self.upper else self.value - x

    def __str__(self) -> str:
        return f"{self.name} {self.op} {self.value:g}"


def parse_constraint(spec: str | Mapping[str, Any] | Constraint) -> Constraint:
    if isinstance(spec, Constraint):
        return spec
    if isinstance(spec, str):
        m = _CONSTRAINT_RE.match(spec)
        if not m:
            raise ConfigError(f"constraints: cannot parse {spec!r}; write it as 'metric <= number', e.g. 'peak_sram_kb <= 256'")
        return Constraint(m.group(1), m.group(2), float(m.group(3)))
    spec = dict(spec)
    try:
        return Constraint(str(spec["name"]), str(spec["op"]), float(spec["value"]))
    except KeyError as exc:
        raise ConfigError(f"constraints: missing field {exc.args[0]!r} (give name, op, value)") from None
    except (TypeError, ValueError):
        raise ConfigError(f"constraints: value of {spec.get('name')!r} must be a number") from None


def parse_constraints(specs: Iterable[str | Mapping[str, Any] | Constraint] | None) -> tuple[Constraint, ...]:
    return tuple(parse_constraint(s) for s in (specs or ()))
