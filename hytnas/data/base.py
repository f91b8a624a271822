"""The datamodule base: seeded splits, size checks, batched loaders.

Splits (:func:`split_indices`): one ``torch.Generator`` seeded with ``seed`` draws a permutation
of the official train split (then one of the official test split when a subset of it is asked).
Validation is the first ``val_size`` images of that permutation, train the next ``train_size``:
for a fixed seed the validation set does not depend on ``train_size`` and smaller train subsets
are prefixes of larger ones (useful for multi-fidelity search). Datasets without an official test
split (VWW, a flat ImageFolder) carve the test set first from the same permutation. Defaults:
``val_size=None`` is 10 % of the train pool, ``test_size=None`` the whole official test split
(10 % of all images when there is none), ``train_size=None`` everything left.
"""
from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Sampler

from hytnas.data.datasets import BatchTransform, _BatchedDataset
from hytnas.errors import ConfigError

log = logging.getLogger(__name__)

DEFAULT_VAL_FRACTION = 0.1
DEFAULT_TEST_FRACTION = 0.1
#: Grey value of the ITU-R 601 luma transform (what ``rgb_to_grayscale`` uses).
LUMA = (0.2989, 0.587, 0.114)


def default_data_dir() -> Path:
    """``$HYTNAS_DATA_DIR`` or ``~/.cache/hytnas/datasets``: where downloads go when ``root=None``."""
    env = os.environ.get("HYTNAS_DATA_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "hytnas" / "datasets"


def default_cache_dir() -> Path:
    """``$HYTNAS_CACHE_DIR`` or ``~/.cache/hytnas/data-cache``: decoded image folders."""
    env = os.environ.get("HYTNAS_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "hytnas" / "data-cache"


@dataclass(frozen=True)
class Splits:
    """Sorted ``int64`` indices: ``train``/``val`` into the train pool, ``test`` into the test pool
    (the same pool when the dataset has no official test split)."""

    train: torch.Tensor
    val: torch.Tensor
    test: torch.Tensor


def _check_size(field: str, value: Any, minimum: int) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ConfigError(f"{field}: must be an integer or None (all images), got {value!r}")
    if value < minimum:
        raise ConfigError(f"{field}: must be >= {minimum}, got {value}")
    return int(value)


def split_indices(
    n_train_pool: int,
    n_test_pool: int | None,
    *,
    train_size: int | None,
    val_size: int | None,
    test_size: int | None,
    seed: int,
    dataset: str = "dataset",
) -> Splits:
    """Deterministic, disjoint train/val/test indices (see the module docstring)."""
    train_size = _check_size("train_size", train_size, 1)
    val_size = _check_size("val_size", val_size, 1)
    test_size = _check_size("test_size", test_size, 0)
    gen = torch.Generator().manual_seed(int(seed))
    perm = torch.randperm(n_train_pool, generator=gen)
    if n_test_pool is None:  # one pool: test first, then val, then train
        n_test = round(DEFAULT_TEST_FRACTION * n_train_pool) if test_size is None else test_size
        if n_test >= n_train_pool:
            raise ConfigError(f"test_size: {n_test} leaves no image of the {n_train_pool} of {dataset} for training; lower it")
        test, perm = perm[:n_test], perm[n_test:]
    else:
        if test_size is not None and test_size > n_test_pool:
            raise ConfigError(f"test_size: {test_size} is more than the {n_test_pool} test images of {dataset}; lower it or use None for all")
        test = torch.arange(n_test_pool) if test_size is None else torch.randperm(n_test_pool, generator=gen)[:test_size]
    pool = len(perm)
    n_val = max(1, round(DEFAULT_VAL_FRACTION * pool)) if val_size is None else val_size
    if n_val >= pool:
        raise ConfigError(f"val_size: {n_val} leaves no image of the {pool} left in {dataset} for training; lower it")
    n_train = pool - n_val if train_size is None else train_size
    if n_val + n_train > pool:
        raise ConfigError(
            f"train_size: {n_train} is more than the {pool - n_val} images of {dataset} left after "
            f"val_size={n_val}; lower it or use None for all"
        )
    return Splits(
        train=perm[n_val : n_val + n_train].sort().values,
        val=perm[:n_val].sort().values,
        test=test.sort().values,
    )


def mix_seed(*parts: int) -> int:
    """A well-spread 63-bit seed from integers (e.g. ``(seed, epoch, batch)``)."""
    digest = hashlib.blake2b(repr(tuple(int(p) for p in parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & (2**63 - 1)


class BatchIndices(list):
    """The indices of one batch, carrying ``seed``: the seed of that batch's augmentation."""

    seed: int | None = None


class SeededBatchSampler(Sampler[BatchIndices]):
    """Batches of indices; the order of epoch ``e`` is a permutation drawn from
    ``mix_seed(seed, e)`` and every batch carries its own augmentation seed.

    Lightning calls :meth:`set_epoch` before every epoch (as for ``DistributedSampler``), so a fit
    resumed from a checkpoint sees the same batches as an uninterrupted one; iterating without
    ``set_epoch`` moves to the next epoch on every pass.
    """

    def __init__(self, n: int, batch_size: int, *, shuffle: bool, seed: int, drop_last: bool = False) -> None:
        self.n, self.batch_size, self.shuffle, self.seed, self.drop_last = n, batch_size, shuffle, int(seed), drop_last
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.n // self.batch_size if self.drop_last else -(-self.n // self.batch_size)

    def __iter__(self) -> Iterator[BatchIndices]:
        epoch, self.epoch = self.epoch, self.epoch + 1
        if self.shuffle:
            order = torch.randperm(self.n, generator=torch.Generator().manual_seed(mix_seed(self.seed, epoch)))
        else:
            order = torch.arange(self.n)
        for b in range(len(self)):
            batch = BatchIndices(order[b * self.batch_size : (b + 1) * self.batch_size].tolist())
            batch.seed = mix_seed(self.seed, epoch, b)
            yield batch


def batch_loader(
    dataset: _BatchedDataset,
    batch_size: int,
    *,
    shuffle: bool,
    seed: int,
    num_workers: int = 0,
    drop_last: bool = False,
) -> DataLoader:
    """A DataLoader in PyTorch's batched-loading mode: the sampler yields index lists and the
    dataset returns whole batches (``batch_size=None`` turns off per-item collation).

    Order and augmentation depend only on ``(seed, epoch, batch)`` (see
    :class:`SeededBatchSampler`), not on the number of workers; nothing global is seeded.
    """
    return DataLoader(
        dataset,
        sampler=SeededBatchSampler(len(dataset), batch_size, shuffle=shuffle, seed=seed, drop_last=drop_last),
        batch_size=None,
        num_workers=num_workers,
        persistent_workers=num_workers > 0,
        pin_memory=torch.cuda.is_available(),
        generator=torch.Generator().manual_seed(int(seed)),
    )


class ImageDataModule(pl.LightningDataModule):
    """Image classification datamodule of the platform (subclasses provide the data).

    Properties used by the rest of the platform: ``name``, ``num_classes``, ``in_channels``,
    ``input_size``, ``classes``; after :meth:`setup`: ``train_set``, ``val_set``, ``test_set``.
    ``batch_size`` is a public attribute (as Lightning's batch-size tuner expects).
    """

    name: ClassVar[str] = ""
    #: channels of the images as stored (1: grey, 3: RGB)
    native_channels: ClassVar[int] = 3
    mean: ClassVar[tuple[float, ...]] = (0.485, 0.456, 0.406)
    std: ClassVar[tuple[float, ...]] = (0.229, 0.224, 0.225)
    #: keyword options of the subclass beyond the common ones (for :func:`get_datamodule`)
    options: ClassVar[tuple[str, ...]] = ()

    def __init__(
        self,
        root: str | Path | None = None,
        *,
        input_size: int,
        batch_size: int = 128,
        num_workers: int = 0,
        train_size: int | None = None,
        val_size: int | None = None,
        test_size: int | None = None,
        seed: int = 0,
        download: bool = True,
        augment: bool = False,
        in_channels: int | None = None,
    ) -> None:
        super().__init__()
        for fld, v, lo in (("input_size", input_size, 4), ("batch_size", batch_size, 1), ("num_workers", num_workers, 0)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo:
                raise ConfigError(f"{fld}: must be an integer >= {lo}, got {v!r}")
        for fld, v, lo in (("train_size", train_size, 1), ("val_size", val_size, 1), ("test_size", test_size, 0)):
            _check_size(fld, v, lo)
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
            raise ConfigError(f"seed: must be an integer, got {seed!r}")
        if in_channels not in (None, 1, 3):
            raise ConfigError(f"in_channels: must be 1, 3 or None (the dataset's own), got {in_channels!r}")
        self.root = Path(root).expanduser() if root is not None else None
        self.input_size = int(input_size)
        self.batch_size = int(batch_size)
        self.num_workers = int(num_workers)
        self.train_size, self.val_size, self.test_size = train_size, val_size, test_size
        self.seed = int(seed)
        self.download = bool(download)
        self.augment = bool(augment)
        self._in_channels = int(in_channels or self.native_channels)
        # the constructor's arguments, as plain values: ``cls.load_from_checkpoint`` rebuilds it
        self.save_hyperparameters(
            {"root": None if root is None else str(root), "input_size": self.input_size, "batch_size": self.batch_size,
             "num_workers": self.num_workers, "train_size": train_size, "val_size": val_size, "test_size": test_size,
             "seed": self.seed, "download": self.download, "augment": self.augment, "in_channels": self._in_channels}
        )
        self.train_set: _BatchedDataset | None = None
        self.val_set: _BatchedDataset | None = None
        self.test_set: _BatchedDataset | None = None

    # ------------------------------------------------------------------ properties
    @property
    def classes(self) -> list[str]:
        raise NotImplementedError

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def in_channels(self) -> int:
        return self._in_channels

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(name={self.name!r}, root={str(self.root) if self.root else None!r}, "
                f"input_size={self.input_size}, in_channels={self.in_channels}, batch_size={self.batch_size})")

    # ------------------------------------------------------------------ data
    def stored_channels(self) -> int:
        """Channels kept in memory: grey stays grey (repeated per batch); RGB asked as grey is
        converted once."""
        return 1 if self._in_channels == 1 else self.native_channels

    def batch_transform(self, augment: bool) -> BatchTransform:
        mean, std = self.mean, self.std
        if self.stored_channels() == 1 and len(mean) == 3:  # RGB data asked as grey
            mean = (sum(w * m for w, m in zip(LUMA, mean)),)
            std = (sum(w * s for w, s in zip(LUMA, std)),)
        return BatchTransform(self.input_size, tuple(mean), tuple(std), self._in_channels, augment)

    def _build_sets(self) -> tuple[_BatchedDataset, _BatchedDataset, _BatchedDataset]:
        raise NotImplementedError

    def pool_sizes(self) -> tuple[int, int | None]:
        """``(images of the train pool, images of the official test split or None)``, found
        cheaply (file headers, file counts) after :meth:`prepare_data`, without loading the data."""
        raise NotImplementedError

    def check_sizes(self) -> None:
        """ConfigError naming ``train_size``/``val_size``/``test_size`` when the data holds fewer
        images than asked (the message gives the available count); call after :meth:`prepare_data`."""
        n_train, n_test = self.pool_sizes()
        split_indices(n_train, n_test, train_size=self.train_size, val_size=self.val_size,
                      test_size=self.test_size, seed=self.seed, dataset=self.name)

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        self.prepare_data()  # idempotent: makes setup() alone work outside a Trainer
        self.train_set, self.val_set, self.test_set = self._build_sets()
        log.debug("%s: %d train / %d val / %d test images at %d px", self.name, len(self.train_set),
                  len(self.val_set), len(self.test_set), self.input_size)

    def _require_setup(self) -> None:
        if self.train_set is None:
            self.setup()

    def train_dataloader(self) -> DataLoader:
        self._require_setup()
        assert self.train_set is not None
        # drop a ragged last batch (a batch of one breaks BatchNorm), unless the set is smaller
        drop_last = len(self.train_set) > self.batch_size
        return batch_loader(self.train_set, self.batch_size, shuffle=True, seed=self.seed,
                            num_workers=self.num_workers, drop_last=drop_last)

    def val_dataloader(self) -> DataLoader:
        self._require_setup()
        assert self.val_set is not None
        return batch_loader(self.val_set, self.batch_size, shuffle=False, seed=self.seed, num_workers=self.num_workers)

    def test_dataloader(self) -> DataLoader:
        self._require_setup()
        assert self.test_set is not None
        return batch_loader(self.test_set, self.batch_size, shuffle=False, seed=self.seed, num_workers=self.num_workers)
