"""The HyT-NAS search space as data.

One declarative definition (:class:`SpaceDef`, validated with pydantic, loadable from YAML) is
turned, in one place each, into

- the 23-gene exchange vector (:meth:`Space.to_vector` / :meth:`Space.from_vector`),
- the searcher's numeric encoding (:meth:`Space.encode`, a ``torch.Tensor`` in [0, 1]^23),
- trial configs (:meth:`Space.to_config` / :meth:`Space.from_config`; Ray Tune's ``param_space``
  over the latent genes is :func:`search_algos.tune.param_space`),
- the model config (:meth:`Space.to_arch_cfg`, an :class:`~hytnas.models.config.ArchCfg`).

Stage grammar (fixed; the choice lists, caps and input size are data):

- stem: 3x3 conv, stride 2, ``stem_channels`` channels;
- stage 1: one MV2 block, stride 1, expand e1, out c1;
- stage 2: n2 MV2 blocks, the first with stride 2, expand e2, out c2;
- stages 3..5: one MV2 block with stride 2 (expand e_s), then a MobileViT block with t_s layers,
  h_s heads, FFN ratio f_s, patch p_s, out c_s (transformer width: largest power of two <= c_s);
- head: 1x1 conv to ``min(head_mult * c5, head_max_channels)`` channels, global pool, linear.

Channels come from a width chain (as the authors' generator does): ``u1 = c1``,
``u_s = u_(s-1) * m_s`` on the uncapped floats, ``c_s = min(int(u_s), cap_s)``. The canonical
arch stores the channels; the multipliers ``m2..m5`` are a latent parametrisation used for
sampling, mutation and Ray Tune's ``param_space`` (:meth:`Space.latent_choices`).
"""
from __future__ import annotations

import hashlib
import itertools
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from hytnas.errors import SpaceError
from hytnas.models.config import ArchCfg, BlockCfg, largest_pow2_le
from hytnas.utils import read_yaml

GENES: tuple[str, ...] = (
    "n2", "t3", "t4", "t5",
    "e1", "e2", "e3", "e4", "e5",
    "c1", "c2", "c3", "c4", "c5",
    "h3", "h4", "h5",
    "f3", "f4", "f5",
    "p3", "p4", "p5",
)
CHANNEL_GENES = ("c1", "c2", "c3", "c4", "c5")
MULTIPLIERS = ("m2", "m3", "m4", "m5")
#: The genes with free choices, the channel genes c2..c5 replaced by the multipliers m2..m5:
#: the keys of Ray Tune's ``param_space`` and the dimensions of Sobol sampling.
LATENT_GENES: tuple[str, ...] = tuple(g for g in GENES if g not in CHANNEL_GENES[1:]) + MULTIPLIERS
_FAMILIES = {"n": ("n2",), "t": ("t3", "t4", "t5"), "e": ("e1", "e2", "e3", "e4", "e5"),
             "h": ("h3", "h4", "h5"), "f": ("f3", "f4", "f5"), "p": ("p3", "p4", "p5")}
_CHOICE_GENES = tuple(g for g in GENES if g not in CHANNEL_GENES)
BUILTIN_DIR = Path(__file__).parent / "builtin"


@dataclass(frozen=True)
class Arch:
    """A point of the space: the 23 genes, canonical (channels absolute, f as a ratio)."""

    n2: int
    t3: int
    t4: int
    t5: int
    e1: float
    e2: float
    e3: float
    e4: float
    e5: float
    c1: int
    c2: int
    c3: int
    c4: int
    c5: int
    h3: int
    h4: int
    h5: int
    f3: float
    f4: float
    f5: float
    p3: int
    p4: int
    p5: int

    def to_dict(self) -> dict[str, int | float]:
        return {g: getattr(self, g) for g in GENES}

    def __iter__(self):
        return (getattr(self, g) for g in GENES)

    @property
    def channels(self) -> tuple[int, int, int, int, int]:
        return (self.c1, self.c2, self.c3, self.c4, self.c5)


# --------------------------------------------------------------------------- definition (YAML)
Number = float


class WidthDef(BaseModel):
    model_config = ConfigDict(extra="forbid")
    c1: list[int] = Field(min_length=1)
    multipliers: list[Number] = Field(min_length=1)
    caps: list[int | None] = Field(min_length=5, max_length=5)

    @field_validator("c1")
    @classmethod
    def _pos_c1(cls, v: list[int]) -> list[int]:
        if any(c < 1 for c in v):
            raise ValueError("channel choices must be >= 1")
        return sorted(set(v))

    @field_validator("multipliers")
    @classmethod
    def _pos_m(cls, v: list[float]) -> list[float]:
        if any(m <= 0 for m in v):
            raise ValueError("multipliers must be > 0")
        return sorted(set(v))


class SpaceDef(BaseModel):
    """The declarative definition of a space (what a space YAML file holds)."""

    model_config = ConfigDict(extra="forbid")
    name: str
    description: str = ""
    input_size: int = Field(224, ge=8, le=1024)
    stem_channels: int = Field(16, ge=1)
    head_mult: float = Field(4.0, ge=0)
    head_max_channels: int = Field(960, ge=1)
    act: str = "silu"
    choices: dict[str, list[Number]]
    width: WidthDef

    @field_validator("choices")
    @classmethod
    def _known_genes(cls, v: dict[str, list[float]]) -> dict[str, list[float]]:
        for key, vals in v.items():
            if key not in _FAMILIES and key not in _CHOICE_GENES:
                raise ValueError(
                    f"unknown gene or family {key!r}; use one of {', '.join(list(_FAMILIES) + list(_CHOICE_GENES))}"
                )
            if not vals:
                raise ValueError(f"{key}: needs at least one choice")
            if any(x <= 0 for x in vals):
                raise ValueError(f"{key}: choices must be > 0")
        return v


def _fmt_loc(err: dict[str, Any]) -> str:
    return ".".join(str(x) for x in err["loc"]) or "space"


def _show(x: Any) -> str:
    """A value as a user wrote it (7, 1.5, 'abc'), without numpy's reprs."""
    try:
        f = float(x)
    except (TypeError, ValueError):
        return repr(x)
    return str(int(f)) if f.is_integer() else repr(f)


def _canon_number(x: float) -> int | float:
    return int(x) if float(x).is_integer() else float(x)


# ------------------------------------------------------------------------------------ the space
class Space:
    """A concrete search space; build with :func:`get_space`."""

    def __init__(self, definition: SpaceDef | Mapping[str, Any]):
        if not isinstance(definition, SpaceDef):
            try:
                definition = SpaceDef.model_validate(dict(definition))
            except ValidationError as exc:
                err = exc.errors()[0]
                raise SpaceError(f"space field {_fmt_loc(err)}: {err['msg']}") from None
        self.definition = definition
        self.name = definition.name
        self.input_size = definition.input_size
        self.choices: dict[str, tuple[int | float, ...]] = {}
        for gene in _CHOICE_GENES:
            family = gene[0]
            vals = definition.choices.get(gene, definition.choices.get(family))
            if vals is None:
                raise SpaceError(f"space field choices.{family}: missing (give the choices of {gene})")
            for v in vals:
                if gene[0] in "nthp" and not float(v).is_integer():
                    raise SpaceError(f"space field choices.{gene}: {v!r} is not an integer")
            self.choices[gene] = tuple(sorted({_canon_number(v) for v in vals}))
        self.c1_choices = tuple(definition.width.c1)
        self.multipliers = tuple(_canon_number(m) for m in definition.width.multipliers)
        self.caps = tuple(definition.width.caps)
        # every channel tuple the chain rule can produce, with the latent multipliers behind it
        self._latents: dict[tuple[int, ...], list[tuple[Any, ...]]] = {}
        for c1 in self.c1_choices:
            for ms in itertools.product(self.multipliers, repeat=4):
                self._latents.setdefault(self._chain(c1, ms), []).append((c1, *ms))
        self.channel_tuples = tuple(sorted(self._latents))
        for i, g in enumerate(CHANNEL_GENES):
            self.choices[g] = tuple(sorted({ct[i] for ct in self.channel_tuples}))
        for ct in self.channel_tuples:
            if min(ct) < 1:
                raise SpaceError(f"space field width: the chain gives a stage with {min(ct)} channels; raise c1 or the multipliers")
        for s in (3, 4, 5):
            for c in self.choices[f"c{s}"]:
                for h in self.choices[f"h{s}"]:
                    if largest_pow2_le(c) % h:
                        raise SpaceError(
                            f"space field choices.h{s}: {h} heads do not divide transformer width "
                            f"{largest_pow2_le(c)} (c{s}={c}); lower the heads or raise the channels"
                        )

    # ---------------------------------------------------------------- identity and serialisation
    def __repr__(self) -> str:
        return f"Space({self.name!r}, input_size={self.input_size}, size={self.cardinality():.3g})"

    def to_dict(self) -> dict[str, Any]:
        return self.definition.model_dump()

    @property
    def space_id(self) -> str:
        blob = json.dumps(self.to_dict(), sort_keys=True)
        return hashlib.sha1(blob.encode()).hexdigest()[:12]

    def cardinality(self) -> int:
        """Number of distinct archs (channel tuples counted once)."""
        n = len(self.channel_tuples)
        for g in _CHOICE_GENES:
            n *= len(self.choices[g])
        return n

    def _chain(self, c1: int, ms: Sequence[float]) -> tuple[int, ...]:
        u = float(c1)
        out = [int(c1) if self.caps[0] is None else min(int(c1), self.caps[0])]
        for i, m in enumerate(ms, start=1):
            u *= m
            c = int(u)
            cap = self.caps[i]
            out.append(c if cap is None else min(c, cap))
        return tuple(out)

    # ---------------------------------------------------------------- validation and vectors
    def _snap(self, gene: str, value: Any) -> int | float:
        """The choice of ``gene`` equal to ``value`` (floats accepted), or SpaceError naming it."""
        try:
            x = float(value)
        except (TypeError, ValueError):
            raise SpaceError(f"gene {gene}: {value!r} is not a number") from None
        if math.isnan(x):
            raise SpaceError(f"gene {gene}: value is NaN")
        for c in self.choices[gene]:
            if abs(x - c) <= 1e-9 * max(1.0, abs(c)):
                return c
        raise SpaceError(
            f"gene {gene}: {_show(value)} is outside the space {self.name!r}; choose one of "
            f"{', '.join(str(c) for c in self.choices[gene])}"
        )

    def validate(self, arch: Arch | Mapping[str, Any]) -> Arch:
        """Return the canonical :class:`Arch`, or raise :class:`SpaceError` naming the gene."""
        if isinstance(arch, Arch) and self._is_canonical(arch):
            return arch
        d = arch.to_dict() if isinstance(arch, Arch) else dict(arch)
        missing = [g for g in GENES if g not in d]
        if missing:
            raise SpaceError(f"gene {missing[0]}: missing (an arch needs all 23 genes: {', '.join(GENES)})")
        extra = [k for k in d if k not in GENES]
        if extra:
            raise SpaceError(f"gene {extra[0]}: unknown gene (an arch has exactly {', '.join(GENES)})")
        vals = {g: self._snap(g, d[g]) for g in GENES}
        ct = tuple(vals[g] for g in CHANNEL_GENES)
        if ct not in self._latents:
            bad = self._first_bad_channel(ct)
            raise SpaceError(
                f"gene {bad}: channels {'-'.join(map(str, ct))} cannot come from the width chain of space "
                f"{self.name!r} (c_s = min(int(c_(s-1) x m), cap) with m in {list(self.multipliers)}, caps {list(self.caps)})"
            )
        return Arch(**vals)

    def _is_canonical(self, a: Arch) -> bool:
        """Fast path of :meth:`validate`: every gene already one of its choices, same type."""
        canon = self.__dict__.get("_canon")
        if canon is None:
            canon = self._canon = {g: {c: c for c in self.choices[g]} for g in _CHOICE_GENES}
        for g, choices in canon.items():
            v = getattr(a, g)
            c = choices.get(v)
            if c is None or type(c) is not type(v):
                return False
        ct = (a.c1, a.c2, a.c3, a.c4, a.c5)
        return ct in self._latents and all(type(c) is int for c in ct)

    def _first_bad_channel(self, ct: tuple[int, ...]) -> str:
        for k in range(1, 6):
            if not any(t[:k] == ct[:k] for t in self.channel_tuples):
                return CHANNEL_GENES[k - 1]
        return "c5"

    def is_valid(self, arch: Arch | Mapping[str, Any]) -> bool:
        try:
            self.validate(arch)
        except SpaceError:
            return False
        return True

    def to_vector(self, arch: Arch | Mapping[str, Any]) -> list[int | float]:
        """The 23-gene exchange vector, in the order of :data:`GENES`."""
        return list(self.validate(arch))

    def from_vector(self, v: Sequence[Any]) -> Arch:
        """Inverse of :meth:`to_vector`; accepts floats (``121.0``); rejects values outside the space."""
        v = list(v)
        if len(v) != len(GENES):
            raise SpaceError(f"gene vector: expected {len(GENES)} genes ({', '.join(GENES)}), got {len(v)}")
        return self.validate(dict(zip(GENES, v)))

    # ---------------------------------------------------------------- model config and identity
    def to_arch_cfg(self, arch: Arch | Mapping[str, Any]) -> ArchCfg:
        a = self.validate(arch)
        dfn = self.definition
        blk = self._block
        blocks = [blk("mv2", c=a.c1, d=1, s=1, e=a.e1), blk("mv2", c=a.c2, d=a.n2, s=2, e=a.e2)]
        for c, e, t, h, f, p in ((a.c3, a.e3, a.t3, a.h3, a.f3, a.p3), (a.c4, a.e4, a.t4, a.h4, a.f4, a.p4),
                                 (a.c5, a.e5, a.t5, a.h5, a.f5, a.p5)):
            blocks += [blk("mv2", c=c, d=1, s=2, e=e), blk("mobilevit", c=c, t=t, h=h, f=f, p=p)]
        head = min(int(dfn.head_mult * a.c5), dfn.head_max_channels) if dfn.head_mult > 0 else None
        return ArchCfg(blocks=tuple(blocks), stem_chs=dfn.stem_channels, stem_stride=2,
                       head_chs=head, act=dfn.act, name=f"{self.name}:{self._short(a)}")

    def _block(self, type_: str, **kw: Any) -> BlockCfg:
        """A shared frozen block config (building one costs ~15 us; the space has few distinct
        ones). The cache lives in the instance (a Space pickled by an older version has none yet)."""
        key = (type_, *kw.values())  # every call site passes the same keywords in the same order
        blocks = self.__dict__.setdefault("_blocks", {})
        blk = blocks.get(key)
        if blk is None:
            blk = blocks[key] = BlockCfg(type_, **kw)
        return blk

    def _short(self, a: Arch) -> str:
        return "-".join(str(x) for x in a)

    def arch_id(self, arch: Arch | Mapping[str, Any]) -> str:
        """Stable hash of the canonical model config (identical models, identical ids)."""
        return self.to_arch_cfg(arch).arch_id

    # ---------------------------------------------------------------- latent parametrisation
    def latent(self, arch: Arch) -> dict[str, int | float]:
        """One latent point (``c1``, ``m2..m5`` instead of ``c2..c5``) that gives ``arch``."""
        a = self.validate(arch)
        lat = self._latents[a.channels][0]
        d = {g: v for g, v in a.to_dict().items() if g not in CHANNEL_GENES[1:]}
        d.update(dict(zip(MULTIPLIERS, lat[1:])))
        return {g: d[g] for g in LATENT_GENES}

    def latent_choices(self) -> dict[str, tuple[int | float, ...]]:
        out = {}
        for g in LATENT_GENES:
            out[g] = self.multipliers if g in MULTIPLIERS else (self.c1_choices if g == "c1" else self.choices[g])
        return out

    def from_latent(self, lat: Mapping[str, Any]) -> Arch:
        ms = []
        for m in MULTIPLIERS:
            x = float(lat[m])
            snapped = [c for c in self.multipliers if abs(c - x) <= 1e-9]
            if not snapped:
                raise SpaceError(f"gene {m}: {_show(lat[m])} is not one of the multipliers {list(self.multipliers)}")
            ms.append(snapped[0])
        c1 = self._snap("c1", lat["c1"])
        d = {g: lat[g] for g in _CHOICE_GENES}
        d.update(zip(CHANNEL_GENES, self._chain(c1, ms)))
        return self.validate(d)

    # ---------------------------------------------------------------- trial configs
    def from_config(self, config: Mapping[str, Any]) -> Arch:
        """The arch of a Tune trial config: either the 23 genes or the latent genes (``m2..m5``)."""
        if all(g in config for g in GENES):
            return self.validate({g: config[g] for g in GENES})
        if all(g in config for g in LATENT_GENES):
            return self.from_latent(config)
        missing = [g for g in GENES if g not in config]
        raise SpaceError(f"gene {missing[0]}: missing from the trial config (give the 23 genes or c1 with m2..m5)")

    def to_config(self, arch: Arch) -> dict[str, Any]:
        """Trial config for ``arch``: the 23 genes (which :meth:`from_config` reads back)."""
        return self.validate(arch).to_dict()

    # ---------------------------------------------------------------- sampling and moves
    def _latent_from_unit(self, u: Sequence[float]) -> Arch:
        lat = {}
        for x, (g, vals) in zip(u, self.latent_choices().items()):
            lat[g] = vals[min(int(float(x) * len(vals)), len(vals) - 1)]
        return self.from_latent(lat)

    def sample(self, n: int, seed: int | None = 0, method: str = "uniform", unique: bool = True) -> list[Arch]:
        """``n`` archs, uniform over the latent genes or a scrambled Sobol sequence over them."""
        if n < 0:
            raise SpaceError(f"sample: n must be >= 0, got {n}")
        if method not in ("uniform", "sobol"):
            raise SpaceError(f"sample: method must be 'uniform' or 'sobol', got {method!r}")
        n_max = self.cardinality()
        if unique and n > n_max:
            raise SpaceError(f"sample: asked for {n} unique archs but space {self.name!r} has only {n_max}")
        out: list[Arch] = []
        seen: set[Arch] = set()
        dim = len(LATENT_GENES)
        if method == "sobol":
            engine = torch.quasirandom.SobolEngine(dim, scramble=True, seed=seed)
            draw = lambda k: engine.draw(k, dtype=torch.float64).tolist()  # noqa: E731
        else:
            rng = np.random.default_rng(seed)
            draw = lambda k: rng.random((k, dim)).tolist()  # noqa: E731
        while len(out) < n:
            for u in draw(max(n - len(out), 1)):
                a = self._latent_from_unit(u)
                if unique and a in seen:
                    continue
                seen.add(a)
                out.append(a)
                if len(out) == n:
                    break
        return out

    def mutate(self, arch: Arch, rng: np.random.Generator | int | None = None, n_genes: int = 1) -> Arch:
        """A different arch: ``n_genes`` latent genes set to another of their choices."""
        rng = np.random.default_rng(rng) if not isinstance(rng, np.random.Generator) else rng
        a = self.validate(arch)
        choices = self.latent_choices()
        mutable = [g for g, v in choices.items() if len(v) > 1]
        if not mutable:
            return a
        lat_options = self._latents[a.channels]
        for _ in range(100):
            lat = self.latent(a)
            c1m = lat_options[int(rng.integers(len(lat_options)))]
            lat.update(dict(zip(("c1",) + MULTIPLIERS, c1m)))
            for g in rng.choice(mutable, size=min(n_genes, len(mutable)), replace=False):
                others = [v for v in choices[g] if v != lat[g]]
                lat[g] = others[int(rng.integers(len(others)))]
            b = self.from_latent(lat)
            if b != a:
                return b
        return a

    def neighbours(self, arch: Arch) -> list[Arch]:
        """All archs one ordinal step away in one gene (channels: one step of c1 or one multiplier)."""
        a = self.validate(arch)
        out: dict[Arch, None] = {}
        base = a.to_dict()
        for g in _CHOICE_GENES:
            vals = self.choices[g]
            i = vals.index(base[g])
            for j in (i - 1, i + 1):
                if 0 <= j < len(vals):
                    out[Arch(**{**base, g: vals[j]})] = None
        lat_choices = self.latent_choices()
        for lat in self._latents[a.channels]:
            for k, g in enumerate(("c1",) + MULTIPLIERS):
                vals = lat_choices[g]
                i = vals.index(lat[k])
                for j in (i - 1, i + 1):
                    if 0 <= j < len(vals):
                        new = list(lat)
                        new[k] = vals[j]
                        ct = self._chain(new[0], new[1:])
                        out[Arch(**{**base, **dict(zip(CHANNEL_GENES, ct))})] = None
        out.pop(a, None)
        return list(out)

    # ---------------------------------------------------------------- numeric encoding
    def encode(self, archs: Iterable[Arch | Mapping[str, Any]] | Arch) -> torch.Tensor:
        """``(n, 23)`` float64 tensor in [0, 1]: ordinal index / (choices - 1) per gene,
        channels as log-channels scaled to the stage's range (genes in :data:`GENES` order)."""
        if isinstance(archs, Arch):
            archs = [archs]
        rows = []
        for arch in archs:
            a = self.validate(arch)
            rows.append([self._enc(g, getattr(a, g)) for g in GENES])
        return torch.tensor(rows, dtype=torch.float64).reshape(-1, len(GENES))

    def nearest(self, X: torch.Tensor) -> list[Arch]:
        """The archs nearest to the rows of ``X (n, 23)``, points of the encoding's unit cube
        (e.g. a continuous optimiser's answer): every choice gene rounded to its nearest encoded
        choice, the five channels together to the nearest valid channel tuple (Euclidean in the
        encoded channel coordinates). ``nearest(encode(archs)) == archs``."""
        X = torch.as_tensor(X, dtype=torch.float64)
        if X.ndim != 2 or X.shape[-1] != len(GENES) or not bool(torch.isfinite(X).all()):
            raise SpaceError(f"nearest: expected a finite (n, {len(GENES)}) tensor, got shape {tuple(X.shape)}")
        if not hasattr(self, "_grid"):
            cols = {g: torch.tensor([self._enc(g, v) for v in self.choices[g]], dtype=torch.float64)
                    for g in _CHOICE_GENES}
            ch = torch.tensor([[self._enc(g, c) for g, c in zip(CHANNEL_GENES, ct)] for ct in self.channel_tuples],
                              dtype=torch.float64)
            self._grid = (cols, ch)
        cols, ch = self._grid
        picks = {}
        for g, enc in cols.items():
            idx = (X[:, GENES.index(g), None] - enc).abs().argmin(-1).tolist()
            picks[g] = [self.choices[g][i] for i in idx]
        ci = [GENES.index(g) for g in CHANNEL_GENES]
        cts = [self.channel_tuples[i] for i in torch.cdist(X[:, ci], ch).argmin(-1).tolist()]
        return [Arch(**{**{g: picks[g][r] for g in _CHOICE_GENES}, **dict(zip(CHANNEL_GENES, cts[r]))})
                for r in range(X.shape[0])]

    def _enc(self, gene: str, value: float) -> float:
        vals = self.choices[gene]
        if len(vals) == 1:
            return 0.0
        if gene in CHANNEL_GENES:
            lo, hi = math.log(vals[0]), math.log(vals[-1])
            return (math.log(value) - lo) / (hi - lo)
        return vals.index(value) / (len(vals) - 1)


# ------------------------------------------------------------------------------------ lookup
def builtin_spaces() -> list[str]:
    return sorted(p.stem for p in BUILTIN_DIR.glob("*.yaml"))


def load_space_yaml(path: str | Path) -> Space:
    path = Path(path)
    data = read_yaml(path, "space file", SpaceError)
    if not isinstance(data, dict):
        raise SpaceError(f"space file {path}: must be a mapping with name, choices and width")
    try:
        return Space(SpaceDef.model_validate(data))
    except ValidationError as exc:
        err = exc.errors()[0]
        raise SpaceError(f"space file {path}: field {_fmt_loc(err)}: {err['msg']}") from None


_CACHE: dict[str, Space] = {}


def get_space(name_or_path: str | Path | Mapping[str, Any] | Space, input_size: int | None = None) -> Space:
    """A built-in space by name (``hytnas``, ``hytnas-tiny``), a space YAML file, or a dict.

    ``input_size`` overrides the space's input resolution.
    """
    if isinstance(name_or_path, Space):
        space = name_or_path
    elif isinstance(name_or_path, Mapping):
        space = Space(name_or_path)
    else:
        key = str(name_or_path)
        if key in builtin_spaces():
            if key not in _CACHE:
                _CACHE[key] = load_space_yaml(BUILTIN_DIR / f"{key}.yaml")
            space = _CACHE[key]
        elif key.endswith((".yaml", ".yml")) or Path(key).is_file():
            if not Path(key).is_file():
                raise SpaceError(f"space: file {key} does not exist")
            space = load_space_yaml(key)
        else:
            raise SpaceError(
                f"space: unknown space {key!r}; use a built-in space ({', '.join(builtin_spaces())}) or a YAML file path"
            )
    if input_size is not None and input_size != space.input_size:
        if not 8 <= int(input_size) <= 1024:
            raise SpaceError(f"space field input_size: {input_size} is outside 8..1024")
        space = Space(space.definition.model_copy(update={"input_size": int(input_size)}))
    return space
