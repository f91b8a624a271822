"""What a search on a Ray cluster needs besides :func:`hytnas.runtime.init_ray` (docs/cluster.md).

- :func:`code_runtime_env`: the ``runtime_env`` that ships this checkout's packages (``hytnas``,
  ``search_algos``, ``trainables``) to every worker (``py_modules``), for clusters whose nodes
  have the dependencies but not this package (``hytnas search --ship-code``).
- :func:`check_data_on_nodes`: before Tune starts, run the data module's ``prepare_data()`` on
  every alive node (one zero-CPU task pinned to each node); a node that cannot read the data is
  one :class:`~hytnas.errors.DataError` line naming the node (IP and id) and the problem.
- :func:`check_storage_uri`: a ``storage_path`` URI (``s3://bucket/path``) must be reachable and
  its bucket must exist, checked with pyarrow before Ray starts (:class:`~hytnas.errors.ConfigError`).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import ray
from ray.exceptions import GetTimeoutError, RayError
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from hytnas.errors import ConfigError, DataError, HytnasError

#: The packages a trial imports from this project (shipped by :func:`code_runtime_env`).
PACKAGES = ("hytnas", "search_algos", "trainables")
#: Seconds to wait for the data check of every node (a fresh worker imports torch first).
CHECK_TIMEOUT_S = 300.0


def code_runtime_env() -> dict[str, Any]:
    """``{"py_modules": [...]}`` with the folders of :data:`PACKAGES` as imported here (Ray
    uploads them once per job and puts them first on every worker's path)."""
    folders = []
    for name in PACKAGES:
        spec = importlib.util.find_spec(name)
        if spec is None or spec.origin is None:
            raise ConfigError(f"--ship-code: the package {name} is not importable here")
        folders.append(str(Path(spec.origin).resolve().parent))
    return {"py_modules": folders}


def _check_data(experiment: Mapping[str, Any], input_size: int) -> str | None:
    """On a node: None when the data module's ``prepare_data()`` passes, else its error line."""
    from hytnas.config import parse_experiment
    from hytnas.data import make_datamodule

    try:
        cfg = parse_experiment(dict(experiment))
        cfg.check_paths()
        make_datamodule(cfg, input_size).prepare_data()
    except HytnasError as exc:
        return str(exc)
    return None


def check_data_on_nodes(experiment: Mapping[str, Any], input_size: int, *, timeout_s: float = CHECK_TIMEOUT_S) -> int:
    """Check the data on every alive node of the connected Ray (see the module docstring).

    ``experiment`` is the plain config (``ExperimentConfig.to_plain()``). Returns the number of
    nodes checked; raises :class:`DataError` naming the first node that fails, cannot run the
    check (e.g. hytnas is not importable there) or does not answer within ``timeout_s``.
    """
    remote = ray.remote(num_cpus=0, max_retries=0)(_check_data)
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    refs = {
        remote.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)).remote(
            dict(experiment), input_size
        ): n
        for n in nodes
    }
    for ref, node in refs.items():
        where = f"node {node.get('NodeManagerAddress', '?')} ({node['NodeID']})"
        try:
            problem = ray.get(ref, timeout=timeout_s)
        except GetTimeoutError:
            raise DataError(f"{where}: the data check did not finish within {timeout_s:.0f} s") from None
        except RayError as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[-1][:300]
            raise DataError(
                f"{where}: the data check could not run ({first}); install hytnas on every node or use --ship-code"
            ) from None
        if problem is not None:
            raise DataError(f"{where}: {problem}")
    return len(refs)


def check_storage_uri(uri: str) -> None:
    """Raise :class:`ConfigError` (one line naming ``storage_path``) when pyarrow cannot open
    ``uri``'s filesystem or its bucket does not exist."""
    import pyarrow
    import pyarrow.fs

    try:
        fs, path = pyarrow.fs.FileSystem.from_uri(uri)
        bucket = path.strip("/").split("/")[0]
        info = fs.get_file_info(bucket)
    except (pyarrow.ArrowException, OSError, ValueError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        raise ConfigError(f"storage_path: cannot reach {uri} ({first})") from None
    if info.type != pyarrow.fs.FileType.Directory:
        raise ConfigError(f"storage_path: bucket {bucket!r} of {uri} does not exist; create it first")


__all__ = ["PACKAGES", "code_runtime_env", "check_data_on_nodes", "check_storage_uri"]
