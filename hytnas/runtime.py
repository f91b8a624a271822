"""The Ray runtime of every Tune run (search, benchmark run, benchmark build): one start-up.

:func:`init_ray` starts local Ray with this machine's CPUs (its CPU affinity), no dashboard,
worker logs kept off the driver's console and Ray's own logging at WARNING, or connects to a
running cluster at ``address`` (probed first with a TCP connect, :func:`probe_address`); a Ray
instance that is already running is used as is. Before
that it sets (unless already set) :data:`QUIET_ENV`, which keeps Tune's console output to what
:class:`hytnas.callbacks.ProgressCallback` prints, plus the caller's ``env``.

Local means local: the Ray that :func:`init_ray` starts itself (no ``address``) is bound to the
loopback interface. Its node IP is ``127.0.0.1``, so the GCS, the raylet, the object manager,
the workers, the driver and the runtime-env agent listen on 127.0.0.1 only (Ray binds its gRPC
servers to loopback exactly when the node IP is 127.0.0.1; by default it resolves 127.0.0.1 to
the machine's routable IP and listens on every interface). A cluster (``address``) is left as
its nodes were started. docs/cluster.md lists what listens where.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import socket
from collections.abc import Iterator, Mapping
from typing import Any

import ray

from hytnas.errors import ConfigError

#: Environment that keeps Ray Tune's console output to what ``ProgressCallback`` prints.
QUIET_ENV = {
    "RAY_AIR_NEW_OUTPUT": "0",
    "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S": "0",
    "RAY_DEDUP_LOGS": "1",
}
#: Set for a local Ray: Ray's own switch for single-machine Ray (the default on macOS and Windows),
#: under which a node IP of 127.0.0.1 is kept rather than resolved to the routable IP.
LOOPBACK_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
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
    if address:  # also when a Ray is already running here: a wrong address is never silently ignored
        probe_address(address)
    if ray.is_initialized():
        return False
    kwargs = {"include_dashboard": False, "log_to_driver": False, "logging_level": logging.WARNING, **kwargs}
    if num_gpus is not None:
        kwargs["num_gpus"] = num_gpus
    try:
        if address:
            ray.init(address=address, **kwargs)
        else:
            kwargs.setdefault("_node_ip_address", "127.0.0.1")
            with _loopback_only():
                ray.init(num_cpus=num_cpus or machine_cpus(), **kwargs)
    except ConnectionError as exc:
        raise ConfigError(f"--address: cannot connect to a Ray cluster at {address} ({exc})") from None
    return True


#: Seconds :func:`probe_address` waits for a TCP connection to the cluster.
PROBE_TIMEOUT_S = 5.0


def probe_address(address: str, timeout: float = PROBE_TIMEOUT_S) -> None:
    """ConfigError (one line naming ``--address``) unless something listens at ``HOST:PORT`` or
    ``ray://HOST:PORT`` (a plain TCP connect, ``timeout`` seconds), so that a wrong address fails
    fast instead of Ray retrying for minutes; ``ray://`` also needs Ray Client (``ray[client]``).
    ``auto`` (and any other form) is left to ``ray.init``."""
    target = address
    if address.startswith("ray://"):
        if importlib.util.find_spec("grpc") is None:
            raise ConfigError(
                f'--address: {address} needs Ray Client; install it with pip install "ray[client]" '
                "or give the cluster's HOST:PORT (its GCS, default port 6379)"
            )
        target = address.removeprefix("ray://")
    host, sep, port = target.rpartition(":")
    if not sep or not host or not port.isdigit():
        if address.startswith("ray://"):
            raise ConfigError(f"--address: {address} is not ray://HOST:PORT")
        return
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            pass
    except OSError as exc:
        raise ConfigError(
            f"--address: nothing answers at {target} ({exc.strerror or type(exc).__name__}); start "
            "the cluster (ray start --head) or fix the address"
        ) from None


@contextlib.contextmanager
def _loopback_only() -> Iterator[None]:
    """While a local Ray starts: :data:`LOOPBACK_ENV` in the environment (the processes Ray starts
    inherit it) and in the driver (``ray._private.ray_constants``, read when ``ray`` was imported),
    so that ``ray.init(_node_ip_address="127.0.0.1")`` keeps the loopback address."""
    from ray._private import ray_constants

    saved_env = {k: os.environ.get(k) for k in LOOPBACK_ENV}
    saved_flag = ray_constants.ENABLE_RAY_CLUSTER
    os.environ.update(LOOPBACK_ENV)
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = saved_flag
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def shutdown(started: bool) -> None:
    """Shut Ray down when :func:`init_ray` started it."""
    if started:
        ray.shutdown()
