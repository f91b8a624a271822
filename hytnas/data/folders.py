"""Image folders: torchvision's ImageFolder layout and Visual Wake Words (MLPerf Tiny).

Layouts:

- ``imagefolder``: ``<root>/<class>/<image>`` (torchvision's ``ImageFolder``; extensions of
  ``torchvision.datasets.folder.IMG_EXTENSIONS``), or with an official split
  ``<root>/train/<class>/...`` plus ``<root>/test/<class>/...`` (or ``val/``).
- ``vww``: ``<root>/person/*.jpg`` and ``<root>/non_person/*.jpg`` (e.g. ``vw_coco2014_96``);
  label 0 = non_person, 1 = person.

Decoding jpgs is the cost on a small machine, so by default the whole folder is decoded once at
the input size into a ``uint8`` ``.npy`` file in the cache dir (filled batch by batch through a
DataLoader, so memory stays flat; published with an atomic rename), keyed by the folder's file
list (names, sizes, mtimes), the input size and channels. Trials then memory-map it: concurrent
trials share one copy in the OS page cache. Folders whose decoded size exceeds ``max_cache_mb``,
or ``cache=False``, are decoded batch by batch on every epoch instead (use ``num_workers``).
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import BatchSampler, DataLoader, SequentialSampler

from hytnas.data.base import ImageDataModule, default_cache_dir, split_indices
from hytnas.data.datasets import ImageFileDataset, TensorImageDataset, _RawFiles
from hytnas.errors import ConfigError, DataError
from hytnas.utils import atomic_write_json

log = logging.getLogger(__name__)

CACHE_VERSION = 1


def scan_folder(folder: Path, classes: list[str] | None, layout: str) -> tuple[list[str], list[str], list[int]]:
    """``(classes, files, labels)`` of one ImageFolder-style folder, via torchvision's own
    ``find_classes``/``make_dataset``; any problem becomes one :class:`DataError` line."""
    from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes, make_dataset

    if not folder.is_dir():
        raise DataError(f"{folder}: folder not found; expected {layout}")
    try:
        if classes is None:
            classes, _ = find_classes(folder)
        missing = [c for c in classes if not (folder / c).is_dir()]
        if missing:
            raise DataError(f"{folder}: no {missing[0]}/ folder; expected {layout}")
        samples = make_dataset(folder, {c: i for i, c in enumerate(classes)}, extensions=IMG_EXTENSIONS)
    except FileNotFoundError as exc:
        raise DataError(f"{folder}: {str(exc).splitlines()[0]} Expected {layout}") from None
    return list(classes), [s[0] for s in samples], [s[1] for s in samples]


def fingerprint(files: list[str], extra: dict[str, Any]) -> str:
    """Hash of the file list (names, sizes, mtimes) and ``extra``: the cache key."""
    h = hashlib.sha1(json.dumps(extra, sort_keys=True).encode())
    for f in files:
        st = os.stat(f)
        h.update(f"{f}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def build_decoded_cache(
    folder: Path, files: list[str], size: int, channels: int, *, num_workers: int = 0
) -> np.ndarray:
    """The files decoded to ``uint8 (N, channels, size, size)``, as a read-only memmap of
    ``folder/images.npy``; built once (in a temp folder renamed into place) if missing."""
    images = folder / "images.npy"
    if not (folder / "meta.json").is_file():
        tmp = folder.parent / f".{folder.name}.{uuid.uuid4().hex}.tmp"
        tmp.mkdir(parents=True)
        try:
            mm = np.lib.format.open_memmap(tmp / "images.npy", mode="w+", dtype=np.uint8,
                                           shape=(len(files), channels, size, size))
            loader = DataLoader(_RawFiles(files, size, channels), batch_size=None, num_workers=num_workers,
                                sampler=BatchSampler(SequentialSampler(files), 256, drop_last=False))
            i = 0
            for batch in loader:  # (B, C, S, S) uint8
                mm[i : i + len(batch)] = batch.numpy()
                i += len(batch)
            mm.flush()
            del mm
            atomic_write_json(tmp / "meta.json", {"version": CACHE_VERSION, "n": len(files), "size": size,
                                                  "channels": channels, "source": str(folder)})
            try:
                os.rename(tmp, folder)
            except OSError:  # another process published the same cache first
                if not (folder / "meta.json").is_file():
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    arr = np.load(images, mmap_mode="r")
    if arr.shape != (len(files), channels, size, size):
        raise DataError(f"{images}: cached array has shape {arr.shape}, expected {(len(files), channels, size, size)}; delete {folder}")
    return arr


class ImageFolderDataModule(ImageDataModule):
    """Any torchvision ImageFolder layout (see the module docstring)."""

    name = "imagefolder"
    native_channels = 3
    options = ("cache", "cache_dir", "max_cache_mb")
    #: fixed class list (None: the sorted sub-folders)
    fixed_classes: tuple[str, ...] | None = None

    def __init__(self, root: str | Path | None = None, *, cache: bool = True, cache_dir: str | Path | None = None,
                 max_cache_mb: int = 8192, **kwargs: Any) -> None:
        if root is None:
            raise ConfigError(f"dataset.root: required for {self.name}; point it at {self.layout()}")
        super().__init__(root, **kwargs)
        self.cache = bool(cache)
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
        self.max_cache_mb = int(max_cache_mb)
        self._scan: tuple[list[str], list[str], np.ndarray, int | None] | None = None
        self._decoded_arr: np.ndarray | None = None
        self._decoded_done = False
        try:
            self._scan_folders()  # fail fast (one DataError line) on a missing or malformed folder
        except DataError as exc:
            raise DataError(f"dataset.root: {exc}") from None

    @classmethod
    def layout(cls) -> str:
        return ("an ImageFolder layout <root>/<class>/<image>.jpg (or <root>/train/<class>/... "
                "with <root>/test/<class>/...)")

    def _split_layout(self) -> tuple[Path, Path] | None:
        assert self.root is not None
        train = self.root / "train"
        for name in ("test", "val"):
            if train.is_dir() and (self.root / name).is_dir():
                return train, self.root / name
        return None

    def _scan_folders(self) -> tuple[list[str], list[str], np.ndarray, int | None]:
        """``(classes, files, labels, n_train_pool or None)``; test files follow the train files."""
        if self._scan is None:
            assert self.root is not None
            fixed = list(self.fixed_classes) if self.fixed_classes else None
            split = self._split_layout()
            if split is None:
                classes, files, labels = scan_folder(self.root, fixed, self.layout())
                n_train = None
            else:
                classes, files, labels = scan_folder(split[0], fixed, self.layout())
                _, test_files, test_labels = scan_folder(split[1], classes, self.layout())
                n_train = len(files)
                files, labels = files + test_files, labels + test_labels
            if len(classes) < 2:
                raise DataError(f"{self.root}: found {len(classes)} class folder; expected {self.layout()} with >= 2 classes")
            self._scan = (classes, files, np.asarray(labels, dtype=np.int64), n_train)
        return self._scan

    @property
    def classes(self) -> list[str]:
        return self._scan_folders()[0]

    def _cache_folder(self) -> Path | None:
        _, files, _, _ = self._scan_folders()
        s, c = self.input_size, self.stored_channels()
        if not self.cache or len(files) * c * s * s > self.max_cache_mb * 2**20:
            return None
        key = fingerprint(files, {"v": CACHE_VERSION, "size": s, "channels": c})
        return self.cache_dir / f"{self.name}-{s}px-{c}ch-{key}"

    def prepare_data(self) -> None:
        self._decoded()

    def pool_sizes(self) -> tuple[int, int | None]:
        _, files, _, n_train = self._scan_folders()
        return (len(files), None) if n_train is None else (n_train, len(files) - n_train)

    def _decoded(self) -> np.ndarray | None:
        """The memory-mapped decoded folder (built on first use), or None to decode on the fly."""
        if self._decoded_done:
            return self._decoded_arr
        folder = self._cache_folder()
        if folder is not None:
            _, files, _, _ = self._scan_folders()
            try:
                self._decoded_arr = build_decoded_cache(folder, files, self.input_size, self.stored_channels(),
                                                        num_workers=self.num_workers)
            except OSError as exc:  # read-only or full disk: train anyway
                log.warning("%s: cannot write the cache in %s (%s); decoding on the fly", self.name, self.cache_dir, exc)
        self._decoded_done = True
        return self._decoded_arr

    def _build_sets(self):
        _, files, labels, n_train = self._scan_folders()
        n_test_pool = None if n_train is None else len(files) - n_train
        sp = split_indices(len(files) if n_train is None else n_train, n_test_pool, train_size=self.train_size,
                           val_size=self.val_size, test_size=self.test_size, seed=self.seed, dataset=self.name)
        test_offset = 0 if n_train is None else n_train
        decoded = self._decoded()
        out = []
        for idx, aug in ((sp.train, True), (sp.val, False), (sp.test + test_offset, False)):
            i = idx.numpy()
            y = torch.from_numpy(labels[i])
            tf = self.batch_transform(aug and self.augment)
            if decoded is not None:
                out.append(TensorImageDataset(decoded, y, tf, index=i, seed=self.seed))
            else:
                out.append(ImageFileDataset([files[k] for k in i], y, tf, channels=self.stored_channels(), seed=self.seed))
        return tuple(out)


class VWWDataModule(ImageFolderDataModule):
    """Visual Wake Words (person / non_person), MLPerf Tiny layout."""

    name = "vww"
    fixed_classes = ("non_person", "person")

    @classmethod
    def layout(cls) -> str:
        return "the MLPerf Tiny VWW layout <root>/person/*.jpg and <root>/non_person/*.jpg (e.g. vw_coco2014_96)"

    def _split_layout(self) -> None:
        return None
