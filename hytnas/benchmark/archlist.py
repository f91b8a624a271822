"""The fixed arch list of a benchmark build.

``build_items(space, n_sobol, seed, replicate=20, seeds=3)``:

1. a scrambled Sobol sample of ``n_sobol`` distinct archs over the space's latent encoding
   (``space.sample(n, seed, method="sobol")``): deterministic in ``seed``, so a second build
   with the same config trains the same archs in the same order;
2. the zoo members that are points of the space (exact gene match, see
   :func:`zoo_archs_in_space`), appended when not already sampled;
3. the first ``replicate`` archs of that list trained again with ``seeds - 1`` more training
   seeds (the seed-noise replicates). Sobol prefixes are space-filling, so the first archs are
   a representative subset.

Every item is ``(arch, training_seed, replicate_index)``; the primary run of an arch is
replicate 0 with the build's base seed.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hytnas.errors import ConfigError, SpaceError
from hytnas.space import GENES, Arch, Space


@dataclass(frozen=True)
class BuildItem:
    """One trial of a build: an arch trained with one seed (``replicate`` 0 is the table row)."""

    arch: Arch
    seed: int
    replicate: int
    source: str  # "sobol" | "zoo:<name>"

    def key(self, space: Space) -> tuple[str, int]:
        return (space.arch_id(self.arch), self.seed)


def arch_from_cfg(space: Space, cfg: Any) -> Arch | None:
    """The genes of an :class:`~hytnas.models.config.ArchCfg`, when it has the stage grammar of
    the space (mv2, mv2 x n2, then (mv2, mobilevit) x 3, same stem and head) and every gene is a
    choice of the space; else None."""
    blocks = tuple(getattr(cfg, "blocks", ()))
    if len(blocks) != 8:
        return None
    types = tuple(b.type for b in blocks)
    if types != ("mv2", "mv2", "mv2", "mobilevit", "mv2", "mobilevit", "mv2", "mobilevit"):
        return None
    b1, b2 = blocks[0], blocks[1]
    if b1.d != 1 or b1.s != 1 or b2.s != 2:
        return None
    genes: dict[str, Any] = {"n2": b2.d, "e1": b1.e, "e2": b2.e, "c1": b1.c, "c2": b2.c}
    for k, s in enumerate((3, 4, 5)):
        mv2, vit = blocks[2 + 2 * k], blocks[3 + 2 * k]
        if mv2.d != 1 or mv2.s != 2 or vit.c != mv2.c or vit.dim is not None:
            return None
        genes.update({f"e{s}": mv2.e, f"c{s}": mv2.c, f"t{s}": vit.t, f"h{s}": vit.h,
                      f"f{s}": vit.f, f"p{s}": vit.p})
    try:
        arch = space.validate({g: genes[g] for g in GENES})
    except SpaceError:
        return None
    # same stem, head and activation too: the rebuilt config must be the zoo model itself
    if space.to_arch_cfg(arch).arch_id != cfg.arch_id:
        return None
    return arch


def zoo_archs_in_space(space: Space) -> list[tuple[str, Arch]]:
    """``(name, arch)`` for each model of ``hytnas.models.zoo`` that is exactly a point of ``space``
    (empty when the zoo is not installed or none fits)."""
    try:
        from hytnas.models import zoo
    except ImportError:
        return []
    out = []
    for name in zoo.names():
        arch = arch_from_cfg(space, zoo.get(name))
        if arch is not None:
            out.append((name, arch))
    return out


def build_items(
    space: Space,
    n_sobol: int,
    seed: int = 0,
    replicate: int = 20,
    seeds: int = 3,
    include_zoo: bool = True,
) -> list[BuildItem]:
    """The ordered trial list of a build (see module doc): primaries first, then replicates."""
    if n_sobol < 1:
        raise ConfigError(f"benchmark.n_archs: must be >= 1, got {n_sobol}")
    if seeds < 1:
        raise ConfigError(f"benchmark.seeds: must be >= 1, got {seeds}")
    archs: list[tuple[Arch, str]] = [(a, "sobol") for a in space.sample(n_sobol, seed=seed, method="sobol")]
    seen = {a for a, _ in archs}
    if include_zoo:
        for name, a in zoo_archs_in_space(space):
            if a not in seen:
                seen.add(a)
                archs.append((a, f"zoo:{name}"))
    if not 0 <= replicate <= len(archs):
        raise ConfigError(f"benchmark.replicate: must be in 0..{len(archs)} (the number of archs), got {replicate}")
    items = [BuildItem(a, seed, 0, src) for a, src in archs]
    for r in range(1, seeds):
        items += [BuildItem(a, seed + r, r, src) for a, src in archs[:replicate]]
    return items
