"""The predictor interface, its registry and its plain-file format.

A :class:`Predictor` learns one per-arch metric (a latency, an accuracy, ...) of one space:

- ``fit(archs, y)``: ``archs`` a list of :class:`~hytnas.space.Arch` (or gene mappings), ``y``
  anything array-like of the same length (numpy, torch, list); returns ``self``;
- ``predict(archs) -> (mean, std)``: two float64 ``torch.Tensor`` of shape ``(n,)`` in ``y``'s
  units (``std`` is the model's own uncertainty: the GP posterior, the ensemble spread, the LUT
  residual scale); ``predictor(archs)`` returns the mean only, so a fitted predictor is directly
  a known objective of the searcher (``known_fns={metric: predictor}``);
- fitting and predicting run with ``threads`` torch intra-op threads (default 1, restored
  afterwards: the models are small, and extra threads only contend on a busy machine);
- ``save(path)`` / :func:`load_predictor` ``(path)``: one JSON file holding a versioned plain
  dict (the space definition, the settings, the training data and the fitted state as nested
  lists); nothing is pickled. Loading rebuilds the model and gives identical predictions.

Targets: ``transform="auto"`` fits ``log(y)`` when every ``y > 0`` and ``max(y) / min(y) > 1.5``
(latencies, MACs: relative errors matter), else ``y`` itself; ``"log"`` / ``"none"`` force it.
"""
from __future__ import annotations

import json
import math
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor

from hytnas.errors import DataError
from hytnas.predictors.rank_ensemble import intra_op_threads
from hytnas.space import Arch, Space, get_space
from hytnas.utils import atomic_write_json

FORMAT = "hytnas.predictor"
VERSION = 1
TRANSFORMS = ("auto", "log", "none")


class Predictor(ABC):
    """Base class; subclasses set :attr:`name` and implement ``_fit``, ``_predict``,
    ``_state`` and ``_restore`` over features/targets already transformed."""

    name: ClassVar[str]
    #: False: the model works on the raw target (``transform`` must be ``auto`` or ``none``)
    log_ok: ClassVar[bool] = True
    #: True: the model needs a device's latency table (``table=``: ``lut``, ``lut_gp``)
    needs_table: ClassVar[bool] = False

    def __init__(self, space: Space | str, *, input_size: int | None = None, num_classes: int = 10,
                 in_channels: int = 3, transform: str = "auto", seed: int = 0, threads: int | None = 1,
                 **options: Any) -> None:
        if transform not in TRANSFORMS:
            raise DataError(f"predictor: transform must be one of {', '.join(TRANSFORMS)}, got {transform!r}")
        self.space = get_space(space)
        self.input_size = int(input_size or self.space.input_size)
        self.num_classes = int(num_classes)
        self.in_channels = int(in_channels)
        self.transform = transform
        self.seed = int(seed)
        self.threads = threads  # torch intra-op threads in fit/predict (not saved: a property of the machine)
        self.options = self._check_options(options)
        self.log_target: bool | None = None  # decided by fit
        self.train_archs: list[Arch] = []
        self.train_y: Tensor | None = None

    # ------------------------------------------------------------------ to override
    #: option name -> default; unknown options are refused
    defaults: ClassVar[Mapping[str, Any]] = {}

    @abstractmethod
    def _fit(self, archs: list[Arch], t: Tensor) -> None:
        """Fit on archs and transformed targets ``t`` (float64, (n,))."""

    @abstractmethod
    def _predict(self, archs: list[Arch]) -> tuple[Tensor, Tensor]:
        """Mean and std of the transformed target."""

    @abstractmethod
    def _state(self) -> dict[str, Any]:
        """The fitted state as a JSON-able dict."""

    @abstractmethod
    def _restore(self, state: Mapping[str, Any]) -> None:
        """Inverse of :meth:`_state` (``train_archs``/``train_y`` are already set)."""

    # ------------------------------------------------------------------ public
    def _check_options(self, options: Mapping[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(options) - set(self.defaults))
        if unknown:
            raise DataError(f"predictor {self.name}: unknown option {unknown[0]!r}; options are "
                            f"{', '.join(self.defaults) or 'none'}")
        return {**self.defaults, **options}

    @property
    def fitted(self) -> bool:
        return self.train_y is not None

    def fit(self, archs: Iterable[Arch | Mapping[str, Any]], y: Any) -> Predictor:
        archs = [self.space.validate(a) for a in archs]
        y_t = torch.tensor(np.array(y, dtype=np.float64)).reshape(-1)
        if len(archs) != y_t.shape[0]:
            raise DataError(f"predictor {self.name}: {len(archs)} archs but {y_t.shape[0]} targets")
        if len(archs) < 2:
            raise DataError(f"predictor {self.name}: need at least 2 archs to fit, got {len(archs)}")
        if not torch.isfinite(y_t).all():
            raise DataError(f"predictor {self.name}: targets must be finite")
        positive = bool((y_t > 0).all())
        if self.transform == "log" and not positive:
            raise DataError(f"predictor {self.name}: transform 'log' needs targets > 0")
        if self.transform == "log" and not self.log_ok:
            raise DataError(f"predictor {self.name}: works on the raw target; use transform 'none' or 'auto'")
        self.log_target = self.log_ok and (self.transform == "log" or (
            self.transform == "auto" and positive and float(y_t.max() / y_t.min()) > 1.5))
        self.train_archs, self.train_y = archs, y_t
        with intra_op_threads(self.threads):
            self._fit(archs, self._forward_t(y_t))
        return self

    def predict(self, archs: Iterable[Arch | Mapping[str, Any]]) -> tuple[Tensor, Tensor]:
        """Mean and std in the target's units, float64 tensors of shape ``(n,)``."""
        if not self.fitted:
            raise DataError(f"predictor {self.name}: not fitted; call fit(archs, y) or load a saved predictor")
        archs = [self.space.validate(a) for a in archs]
        if not archs:
            return torch.zeros(0, dtype=torch.float64), torch.zeros(0, dtype=torch.float64)
        with intra_op_threads(self.threads):
            mu, sd = self._predict(archs)
        mu, sd = mu.double().reshape(-1), sd.double().reshape(-1).clamp_min(0)
        if self.log_target:  # log-normal: median exp(mu), std by the delta method
            mean = torch.exp(mu)
            return mean, mean * sd
        return mu, sd

    def __call__(self, archs: Sequence[Arch]) -> Tensor:
        """The predicted mean (a known objective for the searcher)."""
        return self.predict(archs)[0]

    def _forward_t(self, y: Tensor) -> Tensor:
        return torch.log(y) if self.log_target else y

    # ------------------------------------------------------------------ files
    def to_dict(self) -> dict[str, Any]:
        if not self.fitted:
            raise DataError(f"predictor {self.name}: fit it before saving")
        return {
            "format": FORMAT, "version": VERSION, "model": self.name,
            "space": self.space.to_dict(), "input_size": self.input_size, "num_classes": self.num_classes,
            "in_channels": self.in_channels, "transform": self.transform, "log_target": self.log_target,
            "seed": self.seed, "options": _jsonable(self.options),
            "train": {"genes": [self.space.to_vector(a) for a in self.train_archs],
                      "y": [] if self.train_y is None else self.train_y.tolist()},
            "state": self._state(),
        }

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        atomic_write_json(path, self.to_dict())
        return path

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Predictor:
        if not isinstance(d, Mapping) or d.get("format") != FORMAT:
            raise DataError(f"predictor: not a hytnas predictor file (format {FORMAT!r} expected)")
        if d.get("version") != VERSION:
            raise DataError(f"predictor: unsupported version {d.get('version')!r} (this build reads {VERSION})")
        kind = d.get("model")
        if kind not in PREDICTORS:
            raise DataError(f"predictor: unknown model {kind!r}; known: {', '.join(PREDICTORS)}")
        klass = PREDICTORS[kind]
        try:
            p = klass(d["space"], input_size=d["input_size"], num_classes=d["num_classes"],
                      in_channels=d["in_channels"], transform=d["transform"], seed=d["seed"], **d["options"])
            p.log_target = bool(d["log_target"])
            p.train_archs = [p.space.from_vector(g) for g in d["train"]["genes"]]
            y = d["train"]["y"]
            p.train_y = torch.tensor(y, dtype=torch.float64) if y else None
            p._restore(d["state"])
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(f"predictor: malformed file ({type(exc).__name__}: {exc})") from None
        return p


def _jsonable(x: Any) -> Any:
    if isinstance(x, Mapping):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        raise DataError(f"predictor: option value {x} is not finite")
    return x


#: model name -> Predictor subclass (filled by the implementation modules)
PREDICTORS: dict[str, type[Predictor]] = {}


def register(cls: type[Predictor]) -> type[Predictor]:
    PREDICTORS[cls.name] = cls
    return cls


def make_predictor(name: str, space: Space | str, **kwargs: Any) -> Predictor:
    """A fresh predictor of model ``name`` (``lut``, ``gp``, ``rank_ensemble``)."""
    if name not in PREDICTORS:
        raise DataError(f"predictor: unknown model {name!r}; choose one of {', '.join(PREDICTORS)}")
    return PREDICTORS[name](space, **kwargs)


def load_predictor(path: str | Path) -> Predictor:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"predictor {path}: file not found; make one with `hytnas predictor fit --data FILE.csv --target COLUMN --out {path}`")
    try:
        d = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"predictor {path}: not readable JSON ({exc})") from None
    try:
        return Predictor.from_dict(d)
    except DataError as exc:
        raise DataError(f"{path}: {exc}") from None
