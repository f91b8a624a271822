"""The options of every searcher: one frozen, validated settings object per searcher family.

These classes are the single list of searcher options: the factory builds searchers from them,
the experiment YAML's ``search.options`` is validated by them, and the benchmarks pass them.
Types are strict (a quoted number is an error) and unknown keys are errors; every problem is one
:class:`~hytnas.errors.SearchError` line naming the option (:func:`parse_settings`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from hytnas.errors import SearchError

#: the surrogates of ``mobo`` (:mod:`search_algos.mobo.surrogates`)
SURROGATES = ("gp", "rank_ensemble")
#: GP kernels over the encoding (``surrogate_options={"kernel": ...}``)
KERNELS = ("matern", "categorical")
#: the acquisitions of ``mobo`` (:mod:`search_algos.mobo.acquisition`)
ACQUISITIONS = ("qlognehvi", "qlogehvi", "parego")
#: how ``mobo`` infers the hypervolume reference point from the observations
REF_RULES = ("front", "data")
OPTUNA_SAMPLERS = ("nsga2", "tpe", "gp")


class SearcherSettings(BaseModel):
    """What every searcher accepts.

    ``candidates``: pool mode, an arch-table CSV or a list of archs: proposals come only from it.
    ``warm_start``: an arch-table CSV with the reported objective columns: prior observations.
    ``max_epochs``: a result whose ``epoch`` reaches it is final (the trial protocol).
    """

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, arbitrary_types_allowed=True)

    candidates: str | Path | Sequence[Any] | None = None
    warm_start: str | Path | None = None
    max_epochs: int | None = Field(None, ge=1)


class RandomSettings(SearcherSettings):
    """``random``: uniform random search (nothing beyond the common options)."""


class OptunaSettings(SearcherSettings):
    """``optuna-nsga2`` / ``optuna-tpe`` / ``optuna-gp``.

    ``max_rejections``: infeasible draws (known-metric constraints) in a row before giving up.
    """

    max_rejections: int = Field(1000, ge=1)


class MOBOSettings(SearcherSettings):
    """``mobo``: multi-objective Bayesian optimisation (:class:`search_algos.mobo.MOBOSearcher`).

    - ``surrogate``: ``gp`` or ``rank_ensemble``; ``surrogate_options``: keyword arguments of its
      fit function (``kernel``: ``matern`` | ``categorical`` for the GP).
    - ``acquisition``: ``parego`` (default), ``qlognehvi`` or ``qlogehvi``; ``mc_samples``: its MC samples.
    - ``batch_size``: archs picked per acquisition optimisation (sequential greedy); the rest are
      queued for the next asks.
    - ``n_initial``: size of the Sobol initial design (``None``: ``min(10, d + 1)``, ``d`` the
      latent genes with a choice); ``initial_center``: the first design point is the arch nearest
      to the centre of the encoding.
    - ``num_random``, ``num_mutations``: candidate set (random archs, Pareto-set mutations);
      ``local_search_starts``, ``local_search_steps``: hill-climbing on the acquisition;
      ``relax_starts``, ``relax_iters``: continuous relaxation (L-BFGS-B on the encoding, rounded
      to the nearest arch; 0 = off; always off in pool mode).
    - ``ref_point``: ``front`` (nadir of the observed front minus 10 % of its range, as BoTorch and
      Ax do), ``data`` (from all observations) or ``{objective: value}`` in the objectives' units.
    - ``torch_threads``: torch intra-op threads while proposing (``None``: torch's setting).
    """

    surrogate: Literal["gp", "rank_ensemble"] = "gp"
    acquisition: Literal["qlognehvi", "qlogehvi", "parego"] = "parego"
    batch_size: int = Field(1, ge=1)
    n_initial: int | None = Field(None, ge=0)
    initial_center: bool = False
    num_random: int = Field(256, ge=0)
    num_mutations: int = Field(256, ge=0)
    local_search_starts: int = Field(3, ge=0)
    local_search_steps: int = Field(5, ge=0)
    relax_starts: int = Field(0, ge=0)
    relax_iters: int = Field(50, ge=0)
    mc_samples: int = Field(64, ge=1)
    surrogate_options: dict[str, Any] = Field(default_factory=dict)
    ref_point: Literal["front", "data"] | dict[str, float] = "front"
    torch_threads: int | None = Field(None, ge=1)

    @field_validator("surrogate_options")
    @classmethod
    def _known_kernel(cls, v: dict[str, Any]) -> dict[str, Any]:
        kernel = v.get("kernel", "matern")
        if kernel not in KERNELS:
            raise ValueError(f"kernel {kernel!r} is unknown; use one of {', '.join(KERNELS)}")
        return v


#: searcher name -> its settings class
SETTINGS: dict[str, type[SearcherSettings]] = {
    "mobo": MOBOSettings,
    "random": RandomSettings,
    **{f"optuna-{s}": OptunaSettings for s in OPTUNA_SAMPLERS},
    "ax": SearcherSettings,
}
#: the benchmark-only baselines (optional packages): not a choice of ``search.algorithm``
BASELINES = ("ax",)
#: the searchers of the platform (the choices of ``search.algorithm``)
SEARCHERS = tuple(n for n in SETTINGS if n not in BASELINES)


def parse_settings(name: str, options: Mapping[str, Any] | SearcherSettings | None = None) -> SearcherSettings:
    """The validated settings of searcher ``name``; one :class:`SearchError` line per problem."""
    cls = SETTINGS.get(name)
    if cls is None:
        raise SearchError(f"searcher {name!r}: unknown; use one of {', '.join(SEARCHERS)}")
    if isinstance(options, cls):
        return options
    if isinstance(options, SearcherSettings):
        options = options.model_dump(exclude_unset=True)
    opts = dict(options or {})
    try:
        return cls(**opts)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err["loc"] if "[" not in str(p))  # drop union-member tags
        if err["type"] == "extra_forbidden":
            raise SearchError(
                f"searcher {name}: unknown option {field!r}; valid options: {', '.join(sorted(cls.model_fields))}"
            ) from None
        msg = err["msg"].removeprefix("Value error, ")
        raise SearchError(f"searcher {name}: option {field}: {msg} (got {err.get('input')!r})") from None


__all__ = [
    "SearcherSettings",
    "RandomSettings",
    "OptunaSettings",
    "MOBOSettings",
    "SETTINGS",
    "SEARCHERS",
    "BASELINES",
    "parse_settings",
    "SURROGATES",
    "KERNELS",
    "ACQUISITIONS",
    "REF_RULES",
    "OPTUNA_SAMPLERS",
]
