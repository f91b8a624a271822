"""The write-ahead record of a search driven by Ray Tune: which arch each trial id holds. Ray-free.

Ray Tune persists its experiment (the trials it knows, the count of trials created) only from time
to time and uploads it in the background, so a killed driver resumes from a snapshot that may miss
any trial that started after it: trials that were running, and trials that *finished* (their
results told to the searcher, their MLflow runs closed). :class:`SearchRecord` is the searcher
side's own record, written atomically to ``path`` (the search's ``<storage>/searcher.json``)
**before** the event it records can be lost:

- :meth:`hand_out` records a new trial id and its arch before its config is returned to Tune (so
  before the trial can start);
- :meth:`finish` records a finished trial before Tune can snapshot the completion;
- :meth:`load_fresher`: of Tune's snapshot of this state and the record, the one with the higher
  ``seq`` (one more per recorded change) wins;
- :meth:`reconcile` is given the trial ids of the restored Tune experiment. Every trial the record
  has and Tune forgot, running (``trials``) or finished (``told``), goes to the ``retry`` queue and
  is handed out again, first, to the next new trial ids, with its earlier trial ids (``after``,
  newest first; the config key :data:`hytnas.trial.RETRY_OF_KEY`). The trainable continues from
  the newest checkpoint of those trials and the MLflow tracker continues their child run, so a
  forgotten trial is neither a new proposal nor a duplicate, and a finished one is not retrained;
- **told once**: a trial id is told to the core searcher once; the continuation of a finished
  trial is not told again (``told: true`` in its entry).

State (a versioned plain dict, format :data:`STATE_FORMAT` version :data:`STATE_VERSION`):
``seq``, ``max_concurrent``, ``trials`` (id -> entry: handed out, not finished), ``told`` (id ->
entry: finished), ``retry`` (entries), ``searcher`` (the core searcher's ``state_dict``); an entry
is ``{"genes": gene vector, "after": [earlier trial ids], "told": bool}``. Version 1 files (gene
vectors, ``told`` as a list of ids) are read; their finished trials cannot be replayed (no genes).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hytnas.errors import HytnasError, SearchError
from hytnas.space import Arch
from hytnas.trial import RETRY_OF_KEY
from hytnas.utils import atomic_write_json
from search_algos.base import Searcher, read_state

STATE_FORMAT = "hytnas-tune-searcher"
STATE_VERSION = 2
#: The record's file name in an experiment folder.
RECORD_FILE = "searcher.json"
#: What :meth:`SearchRecord.hand_out` returns when the core searcher has nothing left.
FINISHED = "FINISHED"


@dataclass
class Entry:
    """One arch handed out: ``after`` the earlier (lost) trial ids of it, newest first; ``told``:
    its result was already told to the core searcher (a continuation of a finished trial)."""

    arch: Arch | None
    after: list[str] = field(default_factory=list)
    told: bool = False


class SearchRecord:
    """The trial id -> arch record of ``core`` (see the module docstring); ``path`` None: kept in
    memory only (Tune's snapshots hold :meth:`state_dict`)."""

    def __init__(self, core: Searcher, max_concurrent: int = 1, path: str | Path | None = None) -> None:
        if int(max_concurrent) < 1:
            raise SearchError(f"max_concurrent: must be >= 1, got {max_concurrent}")
        self.core = core
        self.max_concurrent = int(max_concurrent)
        self.path = Path(path) if path is not None else None
        self.trials: dict[str, Entry] = {}  # handed out, not finished
        self.told: dict[str, Entry] = {}  # finished (told once)
        self.retry: list[Entry] = []  # forgotten by Tune: handed out again first
        self.seq = 0

    # ------------------------------------------------------------------ events
    def config(self, trial_id: str) -> dict[str, Any]:
        """The trial config of a handed-out trial: the arch's config, plus :data:`RETRY_OF_KEY`
        (comma-separated earlier trial ids, newest first) for a continuation."""
        entry = self.trials[trial_id]
        cfg = self.core.problem.config(entry.arch)
        if entry.after:
            cfg[RETRY_OF_KEY] = ",".join(entry.after)
        return cfg

    def hand_out(self, trial_id: str) -> dict[str, Any] | str | None:
        """The config of a new trial (a retry first, else a new proposal), recorded before it is
        returned; None when ``max_concurrent`` trials are out, :data:`FINISHED` when the core has
        nothing left."""
        if trial_id in self.trials:
            return self.config(trial_id)
        if len(self.trials) >= self.max_concurrent:
            return None
        if self.retry:
            entry = self.retry.pop(0)
        else:
            archs = self.core.ask(1)
            if not archs:
                return FINISHED
            entry = Entry(archs[0])
        self.trials[trial_id] = entry
        self.write()
        return self.config(trial_id)

    def finish(self, trial_id: str, result: Mapping[str, Any] | None, error: bool = False) -> None:
        """Tell the core what became of ``trial_id`` (once) and record it."""
        if trial_id in self.told:  # already told (the record was ahead of Tune's snapshot)
            self.trials.pop(trial_id, None)
            return
        entry = self.trials.pop(trial_id, None)
        if entry is None:  # a trial this record did not hand out: known by its config, if at all
            try:
                entry = Entry(self.core.problem.arch_of((result or {})["config"]))
            except (KeyError, TypeError, HytnasError):
                return
        if entry.told:
            pass  # the continuation of a finished trial: its result was told
        elif error:
            self.core.tell_failed(entry.arch)
        elif self.core.problem.is_final(result):
            self.core.tell(entry.arch, result or {})
        else:
            self.core.tell_stopped(entry.arch)
        entry.told = True
        self.told[trial_id] = entry
        self.write()

    def reconcile(self, known_trial_ids: Iterable[str]) -> list[str]:
        """Queue for a retry every recorded trial (running or finished) whose id is not in
        ``known_trial_ids`` (the trials of the restored Tune experiment); returns those ids."""
        known = {str(t) for t in known_trial_ids}
        lost = []
        for book in (self.trials, self.told):
            for tid in [t for t in book if t not in known]:
                entry = book.pop(tid)
                lost.append(tid)
                if entry.arch is not None:
                    self.retry.append(Entry(entry.arch, [tid, *entry.after], entry.told))
        if lost:
            self.write()
        return lost

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """The versioned plain state (module docstring)."""
        return {
            "format": STATE_FORMAT,
            "version": STATE_VERSION,
            "seq": self.seq,
            "max_concurrent": self.max_concurrent,
            "trials": {tid: self._plain(e) for tid, e in self.trials.items()},
            "told": {tid: self._plain(e) for tid, e in self.told.items()},
            "retry": [self._plain(e) for e in self.retry],
            "searcher": self.core.state_dict(),
        }

    def load_state_dict(self, state: Mapping[str, Any], source: str | Path = "searcher state") -> None:
        """Continue from :meth:`state_dict` (version 1 or 2); one :class:`SearchError` line otherwise."""
        version = state.get("version")
        if state.get("format") != STATE_FORMAT or version not in (1, STATE_VERSION):
            raise SearchError(f"searcher state {source}: not a version-{STATE_VERSION} {STATE_FORMAT}")
        try:
            self.core.load_state_dict(state["searcher"])
            if version == 1:
                self.trials = {str(t): Entry(self._arch(g)) for t, g in state["trials"].items()}
                self.told = {str(t): Entry(None, told=True) for t in state.get("told", [])}
                self.retry = [Entry(self._arch(g)) for g in state.get("retry", [])]
            else:
                self.trials = {str(t): self._entry(e) for t, e in state["trials"].items()}
                self.told = {str(t): self._entry(e) for t, e in state["told"].items()}
                self.retry = [self._entry(e) for e in state["retry"]]
            self.max_concurrent = int(state["max_concurrent"])
            self.seq = int(state.get("seq", 0))
        except HytnasError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise SearchError(f"searcher state {source}: malformed ({type(exc).__name__}: {exc})") from None

    def load_fresher(self, snapshot: str | Path | None = None) -> bool:
        """Load Tune's ``snapshot`` of this state or the record, whichever has the higher ``seq``
        (the record on a tie; nothing when neither is fresher than the state held). Returns
        whether the record was loaded."""
        state, source = (read_state(snapshot), snapshot) if snapshot is not None else (None, None)
        if self.path is not None and self.path.is_file():
            record = read_state(self.path)
            base = int(state.get("seq", 0)) if state is not None else self.seq + 1
            if int(record.get("seq", 0)) >= base:
                self.load_state_dict(record, self.path)
                return True
        if state is not None:
            self.load_state_dict(state, source)
        return False

    def write(self) -> None:
        """One more ``seq``; the state written atomically to ``path`` (when set)."""
        self.seq += 1
        if self.path is not None:
            atomic_write_json(self.path, self.state_dict())

    def _arch(self, genes: Any) -> Arch:
        return self.core.problem.space.from_vector(genes)

    def _entry(self, e: Mapping[str, Any]) -> Entry:
        genes = e.get("genes")
        return Entry(
            None if genes is None else self._arch(genes),
            [str(t) for t in e.get("after", [])],
            bool(e.get("told", False)),
        )

    def _plain(self, e: Entry) -> dict[str, Any]:
        genes = None if e.arch is None else self.core.problem.space.to_vector(e.arch)
        return {"genes": genes, "after": list(e.after), "told": e.told}


__all__ = ["FINISHED", "RECORD_FILE", "STATE_FORMAT", "STATE_VERSION", "Entry", "SearchRecord"]
