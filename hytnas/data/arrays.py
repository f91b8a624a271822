"""Datasets that fit in memory as arrays: Fashion-MNIST and CIFAR-10.

The raw files are read once into ``uint8 (N, C, H, W)`` arrays; the split subsets are resized to
the input size once (``torchvision``'s antialiased uint8 resize, in chunks) when they take at most
``memory_limit_mb``; above that they stay at their native size and every batch is resized on the
fly. There is no disk cache for these: reading and resizing all of Fashion-MNIST takes about
0.6 s at 32 px (2 cores), less than loading a cache would save a trial.
"""
from __future__ import annotations

import gzip
import logging
import pickle
import struct
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hytnas.data.base import ImageDataModule, default_data_dir, split_indices
from hytnas.data.datasets import TensorImageDataset
from hytnas.errors import DataError

log = logging.getLogger(__name__)

#: Where the Debian/Ubuntu package ``dataset-fashion-mnist`` installs the idx files.
FASHION_MNIST_SYSTEM_DIRS: tuple[Path, ...] = (Path("/usr/share/datasets/fashion-mnist"),)
FASHION_MNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
CIFAR10_FOLDER = "cifar-10-batches-py"
CIFAR10_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR10_TEST = "test_batch"
CIFAR10_PER_BATCH = 10000
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
PROBE_TIMEOUT_S = 5.0


def online(url: str, timeout: float = PROBE_TIMEOUT_S) -> bool:
    """Whether ``url`` answers a HEAD request within ``timeout`` (proxies honoured).

    torchvision's downloader has no timeout; this probe keeps an offline machine from hanging.
    """
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=timeout):
            return True
    except (urllib.error.URLError, OSError, ValueError):
        return False


class ArrayDataModule(ImageDataModule):
    """A datamodule over in-memory ``uint8`` arrays with an official train/test split."""

    options = ("memory_limit_mb",)

    def __init__(self, *args: Any, memory_limit_mb: int = 2048, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.memory_limit_mb = int(memory_limit_mb)
        self._arrays: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None

    def _load_arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``(train_x, train_y, test_x, test_y)``, images ``uint8 (N, C, H, W)``, labels int."""
        raise NotImplementedError

    def _to_stored(self, x: np.ndarray) -> np.ndarray:
        """Convert channels (RGB asked as grey) and resize once when it fits the memory limit
        (torchvision is imported only then: images already at the input size do not need it)."""
        s, c = self.input_size, self.stored_channels()
        need_grey = x.shape[1] == 3 and c == 1
        need_resize = x.shape[2:] != (s, s) and x.shape[0] * c * s * s <= self.memory_limit_mb * 2**20
        if not (need_grey or need_resize):
            return x
        from torchvision.transforms.v2 import functional as TF

        out = []
        for chunk in torch.from_numpy(x).split(4096):
            if need_grey:
                chunk = TF.rgb_to_grayscale(chunk)
            if need_resize:
                chunk = TF.resize(chunk, [s, s], antialias=True)
            out.append(chunk)
        return torch.cat(out).numpy()

    def _build_sets(self):
        if self._arrays is None:
            self._arrays = self._load_arrays()
        train_x, train_y, test_x, test_y = self._arrays
        sp = split_indices(len(train_x), len(test_x), train_size=self.train_size, val_size=self.val_size,
                           test_size=self.test_size, seed=self.seed, dataset=self.name)
        out = []
        for (xs, ys), idx, aug in (((train_x, train_y), sp.train, True), ((train_x, train_y), sp.val, False),
                                   ((test_x, test_y), sp.test, False)):
            i = idx.numpy()
            images = self._to_stored(np.ascontiguousarray(xs[i]))
            out.append(TensorImageDataset(images, torch.as_tensor(ys[i], dtype=torch.int64),
                                          self.batch_transform(aug and self.augment), seed=self.seed))
        self._arrays = None  # the subsets hold what is needed
        return tuple(out)


# ------------------------------------------------------------------------------ Fashion-MNIST
def read_idx(path: Path) -> np.ndarray:
    """An IDX file of unsigned bytes (``.gz`` or not) as a numpy array, with one-line errors.

    torchvision's ``read_sn3_pascalvincent_tensor`` reads only uncompressed files and fails with
    a bare ``assert`` on a damaged one, hence this small reader.
    """
    try:
        with (gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")) as fh:
            data = fh.read()
    except (OSError, EOFError) as exc:  # gzip.BadGzipFile is an OSError
        raise DataError(f"{path}: cannot read the file ({exc}); replace it with an intact copy") from None
    if len(data) < 4 or data[:3] != b"\x00\x00\x08":
        raise DataError(f"{path}: not an IDX file of unsigned bytes (bad magic number); expected a Fashion-MNIST *-idx?-ubyte[.gz] file")
    nd = data[3]
    header = 4 + 4 * nd
    if nd not in (1, 3) or len(data) < header:
        raise DataError(f"{path}: IDX header with {nd} dimensions; expected 1 (labels) or 3 (images)")
    dims = struct.unpack(f">{nd}I", data[4:header])
    if len(data) - header != int(np.prod(dims)):
        raise DataError(f"{path}: the IDX header announces {'x'.join(map(str, dims))} bytes but the file holds "
                        f"{len(data) - header}; the file is truncated, replace it")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


def idx_length(path: Path) -> int:
    """The first dimension (items) an IDX file's header announces, reading only the header."""
    try:
        with (gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")) as fh:
            head = fh.read(8)
    except (OSError, EOFError) as exc:
        raise DataError(f"{path}: cannot read the file ({exc}); replace it with an intact copy") from None
    if len(head) < 8 or head[:3] != b"\x00\x00\x08":
        raise DataError(f"{path}: not an IDX file of unsigned bytes (bad magic number); expected a Fashion-MNIST *-idx?-ubyte[.gz] file")
    return int(struct.unpack(">I", head[4:8])[0])


def write_idx(path: Path, arr: np.ndarray, compresslevel: int = 6) -> None:
    """``arr`` as an IDX file of unsigned bytes (the Fashion-MNIST format :func:`read_idx` reads),
    gzip-compressed when ``path`` ends in ``.gz``."""
    blob = (bytes([0, 0, 0x08, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
            + np.ascontiguousarray(arr, dtype=np.uint8).tobytes())
    if Path(path).suffix == ".gz":
        with gzip.open(path, "wb", compresslevel=compresslevel) as fh:
            fh.write(blob)
    else:
        Path(path).write_bytes(blob)


def _idx_file(folder: Path, stem: str) -> Path | None:
    for name in (stem, stem + ".gz"):
        if (folder / name).is_file():
            return folder / name
    return None


def find_idx_folder(folders: list[Path]) -> Path | None:
    """The first folder holding all four Fashion-MNIST idx files (each ``.gz`` or not)."""
    for folder in folders:
        if all(_idx_file(folder, stem) for stem in FASHION_MNIST_FILES):
            return folder
    return None


class FashionMNISTDataModule(ArrayDataModule):
    """Fashion-MNIST (10 classes, 60k train / 10k test, 28x28 grey; kept 1-channel unless
    ``in_channels=3``).

    Sources, in order: ``root`` in torchvision's layout (``root/FashionMNIST/raw``) or a flat
    folder of the idx files; a torchvision download into ``root`` when ``download`` and online;
    the Debian package ``dataset-fashion-mnist`` (``/usr/share/datasets/fashion-mnist``).
    """

    name = "fashion-mnist"
    native_channels = 1
    mean = (0.2860,)
    std = (0.3530,)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._found: Path | None = None

    @property
    def classes(self) -> list[str]:
        return list(FASHION_MNIST_CLASSES)

    def _root(self) -> Path:
        return self.root if self.root is not None else default_data_dir()

    def _local_folders(self) -> list[Path]:
        root = self._root()
        return [root / "FashionMNIST" / "raw", root]

    def _source(self) -> Path:
        if self._found is not None:
            return self._found
        found = find_idx_folder(self._local_folders())
        if found is None and self.download:
            found = self._download()
        if found is None and self.root is None:  # only root=None falls back to the system copy
            found = find_idx_folder(list(FASHION_MNIST_SYSTEM_DIRS))
            if found is not None:
                log.info("fashion-mnist: no idx files in %s; using %s", self._root(), found)
        if found is None:
            partial = [f for f in self._local_folders() if any(_idx_file(f, s) for s in FASHION_MNIST_FILES)]
            if partial:
                missing = next(s for s in FASHION_MNIST_FILES if not _idx_file(partial[0], s))
                raise DataError(f"fashion-mnist: {partial[0]} lacks {missing}[.gz]; it needs all of {', '.join(FASHION_MNIST_FILES)}")
            if self.root is not None:
                raise DataError(
                    f"dataset.root: {self.root} holds no fashion-mnist data (the 4 idx files {', '.join(FASHION_MNIST_FILES)}"
                    f"[.gz]{'' if self.download else ', and dataset.download is false'}); point dataset.root at "
                    "them, or set dataset.root: null for the default locations"
                )
            raise DataError(
                f"fashion-mnist: no data in {self._root()} and no download{'' if self.download else ' (download=False)'}; "
                f"install it offline with `apt-get install dataset-fashion-mnist`, allow internet access, "
                f"or point --set dataset.root=... at a folder with the 4 idx files"
            )
        self._found = found
        return found

    def _download(self) -> Path | None:
        from torchvision.datasets import FashionMNIST

        if not online(FashionMNIST.mirrors[0] + FashionMNIST.resources[0][0]):
            log.info("fashion-mnist: offline, not downloading")
            return None
        try:
            FashionMNIST(str(self._root()), train=True, download=True)
        except (urllib.error.URLError, OSError, RuntimeError) as exc:
            log.warning("fashion-mnist: download failed (%s)", exc)
            return None
        return find_idx_folder(self._local_folders())

    def prepare_data(self) -> None:
        self._source()

    def pool_sizes(self) -> tuple[int, int | None]:
        folder = self._source()
        return (idx_length(_idx_file(folder, FASHION_MNIST_FILES[0])),
                idx_length(_idx_file(folder, FASHION_MNIST_FILES[2])))

    def _load_arrays(self):
        folder = self._source()
        out = []
        for images_stem, labels_stem in (FASHION_MNIST_FILES[:2], FASHION_MNIST_FILES[2:]):
            x_path, y_path = _idx_file(folder, images_stem), _idx_file(folder, labels_stem)
            x, y = read_idx(x_path), read_idx(y_path)
            if x.ndim != 3 or y.ndim != 1:
                raise DataError(f"{x_path if x.ndim != 3 else y_path}: wrong IDX rank (images need 3 dimensions, labels 1)")
            if len(x) != len(y):
                raise DataError(f"{y_path}: {len(y)} labels for {len(x)} images in {x_path.name}")
            if y.size and y.max() >= len(FASHION_MNIST_CLASSES):
                raise DataError(f"{y_path}: label {int(y.max())} outside 0..{len(FASHION_MNIST_CLASSES) - 1}")
            out += [x[:, None], y]
        log.debug("fashion-mnist: read %s", folder)
        return tuple(out)


# ------------------------------------------------------------------------------ CIFAR-10
class _ArrayUnpickler(pickle.Unpickler):
    """Unpickler for CIFAR batch files: only numpy arrays, never arbitrary globals."""

    _ALLOWED = {
        ("numpy", "ndarray"), ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
        ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
        ("_codecs", "encode"),
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing global {module}.{name}")


def read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One ``cifar-10-batches-py`` file: images ``uint8 (N, 3, 32, 32)`` and labels ``(N,)``."""
    layout = "a pickled dict with 'data' (N x 3072 uint8) and 'labels' (N ints in 0..9)"
    try:
        with open(path, "rb") as fh:
            entry = _ArrayUnpickler(fh, encoding="latin1").load()
    except FileNotFoundError:
        raise DataError(f"cifar10: {path} is missing; expected the torchvision layout "
                        f"<root>/{CIFAR10_FOLDER}/{{{','.join(CIFAR10_TRAIN)},{CIFAR10_TEST}}}") from None
    except (OSError, EOFError, pickle.UnpicklingError, ValueError, TypeError, AttributeError) as exc:
        raise DataError(f"cifar10: {path} is not a CIFAR-10 batch ({exc}); expected {layout}") from None
    if not isinstance(entry, dict):
        raise DataError(f"cifar10: {path} is not a CIFAR-10 batch; expected {layout}")
    entry = {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in entry.items()}
    data, labels = entry.get("data"), entry.get("labels")
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or labels is None:
        raise DataError(f"cifar10: {path} is not a CIFAR-10 batch; expected {layout}")
    labels = np.asarray(labels, dtype=np.int64)
    if labels.shape != (len(data),) or (labels.size and (labels.min() < 0 or labels.max() > 9)):
        raise DataError(f"cifar10: {path}: labels must be {len(data)} ints in 0..9")
    return data.reshape(-1, 3, 32, 32), labels


class CIFAR10DataModule(ArrayDataModule):
    """CIFAR-10 (10 classes, 50k train / 10k test, 32x32 RGB) from torchvision's layout
    ``root/cifar-10-batches-py/{data_batch_1..5, test_batch}`` (``root`` may also be that folder);
    downloaded with torchvision when missing, ``download`` set and online."""

    name = "cifar10"
    native_channels = 3
    mean = (0.4914, 0.4822, 0.4465)
    std = (0.2470, 0.2435, 0.2616)

    @property
    def classes(self) -> list[str]:
        return list(CIFAR10_CLASSES)

    def _folder(self) -> Path:
        root = self.root if self.root is not None else default_data_dir()
        return root if root.name == CIFAR10_FOLDER else root / CIFAR10_FOLDER

    def prepare_data(self) -> None:
        folder = self._folder()
        if all((folder / f).is_file() for f in (*CIFAR10_TRAIN, CIFAR10_TEST)):
            return
        if self.download and not folder.exists():
            from torchvision.datasets import CIFAR10

            if online(CIFAR10.url):
                try:
                    CIFAR10(str(folder.parent), train=True, download=True)
                    return
                except (urllib.error.URLError, OSError, RuntimeError) as exc:
                    log.warning("cifar10: download failed (%s)", exc)
        missing = next(f for f in (*CIFAR10_TRAIN, CIFAR10_TEST) if not (folder / f).is_file())
        raise DataError(
            f"{'cifar10' if self.root is None else 'dataset.root'}: {folder / missing} is missing; expected the torchvision layout "
            f"<root>/{CIFAR10_FOLDER}/{{{','.join(CIFAR10_TRAIN)},{CIFAR10_TEST}}} "
            f"(set dataset.root, or allow internet access to download it)"
        )

    def pool_sizes(self) -> tuple[int, int | None]:
        return CIFAR10_PER_BATCH * len(CIFAR10_TRAIN), CIFAR10_PER_BATCH  # the official batches

    def _load_arrays(self):
        folder = self._folder()
        parts = [read_cifar_batch(folder / f) for f in CIFAR10_TRAIN]
        test_x, test_y = read_cifar_batch(folder / CIFAR10_TEST)
        return (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]), test_x, test_y)
