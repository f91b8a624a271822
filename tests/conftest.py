"""Shared fixtures.

- ``ray_local``: one local Ray for the session (``num_cpus=2``, no dashboard), shut down at the end.
- ``fmnist_dir``: the real Fashion-MNIST folder (skips when the Debian package is missing).
- ``fmnist_tiny``: a small real Fashion-MNIST subset (the first 1200 training and 400 test
  images, IDX ``.gz`` files as the original) so that every trial reads little data.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from hytnas.data.arrays import read_idx, write_idx

FMNIST_DIR = Path(os.environ.get("HYTNAS_FMNIST_DIR", "/usr/share/datasets/fashion-mnist"))
FMNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


@pytest.fixture(scope="session")
def fmnist_dir() -> Path:
    if not all((FMNIST_DIR / f"{f}.gz").is_file() for f in FMNIST_FILES):
        pytest.skip(f"Fashion-MNIST not found in {FMNIST_DIR} (install the Debian package dataset-fashion-mnist)")
    return FMNIST_DIR


@pytest.fixture(scope="session")
def fmnist_tiny(fmnist_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("fmnist-tiny")
    for name, n in zip(FMNIST_FILES, (1200, 1200, 400, 400)):
        write_idx(out / f"{name}.gz", read_idx(fmnist_dir / f"{name}.gz")[:n], compresslevel=1)
    return out


@pytest.fixture(scope="session")
def ray_local():
    ray = pytest.importorskip("ray")
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray
    if started:
        ray.shutdown()
