"""``random``: uniform random search over the archs of a space (the baseline every searcher is
compared with). Unique archs only; known-metric constraints honoured by rejection; in pool mode a
uniformly random order of the unused feasible candidates."""

from __future__ import annotations

from hytnas.errors import SearchError
from hytnas.space import Arch
from search_algos.base import ArchSearcher
from search_algos.common import Problem
from search_algos.settings import RandomSettings


class RandomArchSearch(ArchSearcher):
    """Uniform random search (see :class:`search_algos.base.ArchSearcher`)."""

    kind = "random"

    def __init__(self, problem: Problem, settings: RandomSettings | None = None, *, seed: int = 0) -> None:
        super().__init__(problem, settings or RandomSettings(), seed=seed)
        if self.pool is None and self.problem.known_constraints:
            if not self._random_feasible(1, max_rounds=8):
                raise SearchError(
                    "constraints: no arch of 2048 random draws satisfies "
                    f"{', '.join(str(c) for c in self.problem.known_constraints)}; relax the bounds or use a smaller space"
                )
        elif self.pool is not None and not self._pool_left():
            raise SearchError("candidates: no candidate satisfies the constraints (or all are already used)")

    def _propose(self) -> Arch | None:
        got = self._random_feasible(1)
        return got[0] if got else None

    def _settings_state(self) -> dict[str, object]:
        return {"pool_size": None if self.pool is None else len(self.pool)}
