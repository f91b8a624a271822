"""A Ray Tune searcher that replays a fixed list of trial configs, in order.

Used by ``hytnas benchmark build`` so that a fixed arch list goes through the normal Tuner path
(the same trainable, scheduler-free, with the same callbacks and MLflow tracking as a search).

State (``save``/``restore``) is a versioned plain JSON dict: the list and the position. Ray
calls ``save`` with a ``.pkl`` file name; the file still holds JSON, never a pickle.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping, Sequence

from ray.tune.search import Searcher

from hytnas.errors import SearchError
from hytnas.utils import atomic_write_json

STATE_VERSION = 1


class ReplaySearcher(Searcher):
    """Suggests ``configs[0]``, ``configs[1]``, ... then :attr:`Searcher.FINISHED`.

    ``configs`` are complete trial configs (e.g. the 23 genes plus a ``seed``); each is merged
    over nothing, so Tune's ``param_space`` must hold only constants (or be empty).
    """

    def __init__(self, configs: Sequence[Mapping[str, Any]], metric: str | None = None, mode: str | None = None):
        super().__init__(metric=metric, mode=mode)
        self._configs = [dict(c) for c in configs]
        self._next = 0
        self._live: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._configs)

    @property
    def remaining(self) -> int:
        return len(self._configs) - self._next

    def set_search_properties(self, metric: str | None, mode: str | None, config: dict, **spec: Any) -> bool:
        # A replay ignores metric/mode; it accepts them so Tune's TuneConfig(metric=...) works.
        if metric is not None:
            self._metric = metric
        if mode is not None:
            self._mode = mode
        return True

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        if self._next >= len(self._configs):
            return Searcher.FINISHED
        cfg = dict(self._configs[self._next])
        self._live[trial_id] = self._next
        self._next += 1
        return cfg

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        self._live.pop(trial_id, None)

    # ------------------------------------------------------------------ state (plain JSON)
    def get_state(self) -> dict[str, Any]:
        return {"version": STATE_VERSION, "kind": "replay", "configs": self._configs, "next": self._next}

    def set_state(self, state: Mapping[str, Any]) -> None:
        if state.get("version") != STATE_VERSION or state.get("kind") != "replay":
            raise SearchError(
                f"replay searcher state: version {state.get('version')!r} / kind {state.get('kind')!r} "
                f"is not replay v{STATE_VERSION}; start a fresh build"
            )
        self._configs = [dict(c) for c in state["configs"]]
        self._next = int(state["next"])
        self._live = {}

    def save(self, checkpoint_path: str) -> None:
        atomic_write_json(checkpoint_path, self.get_state())

    def restore(self, checkpoint_path: str) -> None:
        try:
            state = json.loads(Path(checkpoint_path).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise SearchError(f"replay searcher state {checkpoint_path}: unreadable ({exc})") from None
        self.set_state(state)
