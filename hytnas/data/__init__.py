"""LightningDataModules of the platform and the :func:`get_datamodule` factory.

>>> dm = get_datamodule("fashion-mnist", input_size=32, train_size=5000, seed=0)
>>> dm.setup(); x, y = next(iter(dm.train_dataloader()))   # x: (128, 1, 32, 32) float32

Every datamodule has ``name``, ``num_classes``, ``in_channels`` and ``input_size``; its loaders
yield ``(images float32 (B, C, S, S), labels int64 (B,))`` already normalised. See
:mod:`hytnas.data.base` for the split rules and :mod:`hytnas.data.datasets` for the batched
loading that keeps the loaders off the critical path.
"""
from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

from hytnas.data.arrays import CIFAR10DataModule, FashionMNISTDataModule, read_cifar_batch, read_idx, write_idx
from hytnas.data.base import ImageDataModule, Splits, batch_loader, default_cache_dir, default_data_dir, split_indices
from hytnas.data.datasets import BatchTransform, ImageFileDataset, TensorImageDataset
from hytnas.data.folders import ImageFolderDataModule, VWWDataModule
from hytnas.errors import ConfigError

#: dataset name -> datamodule class
DATASETS: dict[str, type[ImageDataModule]] = {
    cls.name: cls for cls in (FashionMNISTDataModule, CIFAR10DataModule, VWWDataModule, ImageFolderDataModule)
}
DEFAULT_DATASET = "fashion-mnist"
#: the keywords every datamodule takes (:class:`ImageDataModule`)
COMMON_OPTIONS = tuple(p.name for p in inspect.signature(ImageDataModule.__init__).parameters.values()
                       if p.kind is p.KEYWORD_ONLY)


def canonical_name(name: str) -> str:
    """``"Fashion_MNIST"`` -> ``"fashion-mnist"``; :class:`ConfigError` for unknown names."""
    key = str(name).strip().lower().replace("_", "-")
    aliases = {"fashionmnist": "fashion-mnist", "cifar-10": "cifar10", "image-folder": "imagefolder"}
    key = aliases.get(key, key)
    if key not in DATASETS:
        raise ConfigError(f"dataset.name: unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    return key


def get_datamodule(name: str = DEFAULT_DATASET, root: str | Path | None = None, **kwargs: Any) -> ImageDataModule:
    """The datamodule ``name`` (one of :data:`DATASETS`), not yet set up.

    ``kwargs`` are the keywords of :class:`ImageDataModule` (``input_size`` is required;
    ``batch_size``, ``num_workers``, ``train_size``, ``val_size``, ``test_size``, ``seed``,
    ``download``, ``augment``, ``in_channels``) plus the class's own ``options``:
    ``memory_limit_mb`` (array datasets), ``cache``, ``cache_dir``, ``max_cache_mb`` (folders).
    ``root=None`` means the default data folder (:func:`default_data_dir`) for the downloadable
    datasets; ``vww`` and ``imagefolder`` need a ``root``. ``in_channels=None`` keeps the
    dataset's own channels (1 for Fashion-MNIST). An unknown keyword is a :class:`ConfigError`.
    """
    cls = DATASETS[canonical_name(name)]
    unknown = sorted(set(kwargs) - set(COMMON_OPTIONS) - set(cls.options))
    if unknown:
        raise ConfigError(f"dataset.{unknown[0]}: not an option of {cls.name}; its options are "
                          f"{', '.join(cls.options) or 'none'}")
    return cls(root, **kwargs)


def make_datamodule(cfg: Any, input_size: int, *, batch_size: int | None = None) -> ImageDataModule:
    """The data module of an experiment config (not set up): its ``dataset`` section, with
    ``training.batch_size`` (unless ``batch_size``) and ``training.seed`` (the data subsets)."""
    return get_datamodule(**cfg.dataset.model_dump(), input_size=input_size,
                          batch_size=batch_size or cfg.training.batch_size, seed=cfg.training.seed)


__all__ = [
    "DATASETS", "DEFAULT_DATASET", "get_datamodule", "make_datamodule", "canonical_name", "ImageDataModule",
    "FashionMNISTDataModule", "CIFAR10DataModule", "VWWDataModule", "ImageFolderDataModule",
    "TensorImageDataset", "ImageFileDataset", "BatchTransform", "Splits", "split_indices", "batch_loader",
    "default_data_dir", "default_cache_dir", "read_idx", "write_idx", "read_cifar_batch",
]
