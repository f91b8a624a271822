"""The Ray runtime of every Tune run (search, benchmark run, benchmark build): one start-up.

:func:`init_ray` starts local Ray with this machine's CPUs (its CPU affinity), no dashboard,
worker logs kept off the driver's console and Ray's own logging at WARNING, or connects to a
running cluster at ``address``; a Ray instance that is already running is used as is. Before
that it sets (unless already set) :data:`QUIET_ENV`, which keeps Tune's console output to what
:class:`hytnas.callbacks.ProgressCallback` prints, plus the caller's ``env``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

import ray

from hytnas.errors import ConfigError

#: Environment that keeps Ray Tune's console output to what ``ProgressCallback`` prints.
QUIET_ENV = {
    "RAY_AIR_NEW_OUTPUT": "0",
    "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S": "0",
    "RAY_DEDUP_LOGS": "1",
}
#: Tune without its per-trial loggers (result.json, progress.csv): for runs whose record is a callback.
NO_TRIAL_LOGGERS = {"TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1"}


def machine_cpus() -> int:
    """The CPUs this process may run on (its affinity where the OS tells it)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def init_ray(
    address: str | None = None,
    *,
    num_cpus: int | None = None,
    num_gpus: int | None = None,
    env: Mapping[str, str] | None = None,
    **kwargs: Any,
) -> bool:
    """Start local Ray (``num_cpus`` or :func:`machine_cpus`) or connect to ``address``; see the
    module docstring. ``kwargs`` go to ``ray.init``. Returns whether this call started Ray (and
    so should shut it down); a cluster that cannot be reached is a :class:`ConfigError`."""
    for var, value in {**QUIET_ENV, **(env or {})}.items():
        os.environ.setdefault(var, value)
    if ray.is_initialized():
        return False
    kwargs = {"include_dashboard": False, "log_to_driver": False, "logging_level": logging.WARNING, **kwargs}
    if num_gpus is not None:
        kwargs["num_gpus"] = num_gpus
    try:
        if address:
            ray.init(address=address, **kwargs)
        else:
            ray.init(num_cpus=num_cpus or machine_cpus(), **kwargs)
    except ConnectionError as exc:
        raise ConfigError(f"--address: cannot connect to a Ray cluster at {address} ({exc})") from None
    return True


def shutdown(started: bool) -> None:
    """Shut Ray down when :func:`init_ray` started it."""
    if started:
        ray.shutdown()
