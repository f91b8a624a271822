"""hytnas.data: seeded splits, the four datasets in their real on-disk layouts (generated tiny),
batched loading and augmentation, one-line errors."""
from __future__ import annotations

import gzip
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms.v2 import functional as TF

import hytnas.data.arrays as arrays
from hytnas.data import DATASETS, BatchTransform, get_datamodule, read_idx, split_indices
from hytnas.data.arrays import write_idx
from hytnas.data.base import SeededBatchSampler, batch_loader
from hytnas.data.datasets import TensorImageDataset, random_crop_flip
from hytnas.errors import ConfigError, DataError

SYSTEM_FMNIST = Path("/usr/share/datasets/fashion-mnist")


# ------------------------------------------------------------------------------ generators
def make_fmnist(folder: Path, n_train: int = 60, n_test: int = 20, compress: bool = True, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    suffix = ".gz" if compress else ""
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        write_idx(folder / f"{prefix}-images-idx3-ubyte{suffix}", rng.integers(0, 256, (n, 28, 28)), compresslevel=1)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte{suffix}", np.arange(n) % 10, compresslevel=1)
    return folder


def make_cifar(root: Path, per_batch: int = 8, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        entry = {"batch_label": name, "data": rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8),
                 "labels": [int(v) for v in rng.integers(0, 10, per_batch)], "filenames": [f"{i}.png" for i in range(per_batch)]}
        with open(folder / name, "wb") as fh:
            pickle.dump(entry, fh)
    return root


def make_folder(root: Path, classes: dict[str, int], size: int = 20, seed: int = 0, ext: str = "jpg") -> Path:
    """``root/<class>/<i>.<ext>``: solid-ish colour images, one colour per class."""
    rng = np.random.default_rng(seed)
    for k, (cls, n) in enumerate(classes.items()):
        (root / cls).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            arr = np.full((size, size + 4, 3), 40 * k, dtype=np.uint8) + rng.integers(0, 30, (size, size + 4, 3), dtype=np.uint8)
            Image.fromarray(arr).save(root / cls / f"{i}.{ext}")
    return root


def make_root(name: str, tmp: Path) -> Path:
    """A tiny dataset in the real layout of ``name`` (every entry of DATASETS)."""
    if name == "fashion-mnist":
        return make_fmnist(tmp / "FashionMNIST" / "raw", compress=False).parent.parent  # torchvision layout
    if name == "cifar10":
        return make_cifar(tmp)
    if name == "vww":
        return make_folder(tmp / "vw_coco2014_96", {"non_person": 14, "person": 16})
    if name == "imagefolder":
        return make_folder(tmp / "imgs", {"cat": 10, "dog": 12, "fox": 8}, ext="png")
    raise AssertionError(f"no generator for dataset {name}: add one")


def first_line_only(exc: pytest.ExceptionInfo) -> str:
    msg = str(exc.value)
    assert "\n" not in msg, msg
    return msg


@pytest.fixture(autouse=True)
def _no_system_data(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Keep tests off the network, the user's cache and (unless a test asks) /usr/share."""
    monkeypatch.setattr(arrays, "FASHION_MNIST_SYSTEM_DIRS", ())
    monkeypatch.setattr(arrays, "online", lambda url, timeout=0: False)
    monkeypatch.setenv("HYTNAS_DATA_DIR", str(tmp_path / "default-data"))
    monkeypatch.setenv("HYTNAS_CACHE_DIR", str(tmp_path / "default-cache"))


# ------------------------------------------------------------------------------ splits
@pytest.mark.parametrize("n_test_pool", [None, 30])
@pytest.mark.parametrize("sizes", [(None, None, None), (20, 10, None), (5, 7, 3)])
def test_splits_deterministic_disjoint_and_sized(n_test_pool, sizes):
    train_size, val_size, test_size = sizes
    kw = dict(train_size=train_size, val_size=val_size, test_size=test_size)
    a = split_indices(100, n_test_pool, seed=3, **kw)
    b = split_indices(100, n_test_pool, seed=3, **kw)
    c = split_indices(100, n_test_pool, seed=4, **kw)
    for part in ("train", "val", "test"):
        assert torch.equal(getattr(a, part), getattr(b, part))
    assert not torch.equal(a.val, c.val)
    train, val, test = set(a.train.tolist()), set(a.val.tolist()), set(a.test.tolist())
    assert not train & val
    if n_test_pool is None:  # one pool: test is carved from it too
        assert not test & (train | val)
        n_test = 10 if test_size is None else test_size
        pool = 100 - n_test
    else:
        assert max(test) < n_test_pool
        n_test = n_test_pool if test_size is None else test_size
        pool = 100
    n_val = round(0.1 * pool) if val_size is None else val_size
    assert (len(train), len(val), len(test)) == (pool - n_val if train_size is None else train_size, n_val, n_test)


def test_val_fixed_and_train_nested_across_train_sizes():
    small = split_indices(200, 50, train_size=20, val_size=30, test_size=None, seed=0)
    large = split_indices(200, 50, train_size=80, val_size=30, test_size=None, seed=0)
    assert torch.equal(small.val, large.val)
    assert set(small.train.tolist()) <= set(large.train.tolist())


@pytest.mark.parametrize(
    "kw, field",
    [
        (dict(train_size=95, val_size=10), "train_size"),
        (dict(val_size=100), "val_size"),
        (dict(test_size=31), "test_size"),
        (dict(train_size=0), "train_size"),
        (dict(val_size=2.5), "val_size"),
        (dict(train_size=True), "train_size"),
    ],
)
def test_split_sizes_rejected_with_field(kw, field):
    with pytest.raises(ConfigError) as exc:
        split_indices(100, 30, **{"train_size": None, "val_size": None, "test_size": None, **kw}, seed=0)
    assert first_line_only(exc).startswith(field)


# ------------------------------------------------------------------------------ every dataset
@pytest.mark.parametrize("name", sorted(DATASETS))
@pytest.mark.parametrize("input_size", [16, 24])
def test_every_dataset_loads_in_its_layout(name, input_size, tmp_path):
    root = make_root(name, tmp_path)
    options = {"cache_dir": tmp_path / "cache"} if "cache_dir" in DATASETS[name].options else {}
    dm = get_datamodule(name, root=root, input_size=input_size, batch_size=4, val_size=3, test_size=2, seed=1,
                        download=False, **options)
    assert dm.name == name
    dm.setup()
    assert (len(dm.val_set), len(dm.test_set)) == (3, 2)
    assert dm.num_classes == len(dm.classes) >= 2
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (4, dm.in_channels, input_size, input_size) and x.dtype == torch.float32
    assert y.dtype == torch.int64 and 0 <= int(y.min()) and int(y.max()) < dm.num_classes
    xs = torch.cat([b[0] for b in dm.val_dataloader()])
    assert xs.shape[0] == 3 and torch.isfinite(xs).all()
    single_x, single_y = dm.val_set[0]
    assert single_x.shape == (dm.in_channels, input_size, input_size) and single_y.ndim == 0


@pytest.mark.parametrize("name", ["fashion-mnist", "cifar10"])
def test_array_dataset_subset_sizes_and_disjointness(name, tmp_path):
    root = make_root(name, tmp_path)
    dm = get_datamodule(name, root=root, input_size=20, train_size=11, val_size=5, test_size=4, seed=2, download=False)
    dm.setup()
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (11, 5, 4)
    # train and val images come from disjoint rows of the official train split
    tr = {bytes(r) for r in dm.train_set.images.reshape(11, -1)}
    va = {bytes(r) for r in dm.val_set.images.reshape(5, -1)}
    assert not tr & va


def test_fashion_mnist_channels_and_resize(tmp_path):
    root = make_fmnist(tmp_path / "idx")
    grey = get_datamodule("fashion-mnist", root=root, input_size=32, batch_size=8, seed=0, download=False)
    rgb = get_datamodule("fashion-mnist", root=root, input_size=32, batch_size=8, seed=0, download=False, in_channels=3)
    assert (grey.in_channels, rgb.in_channels) == (1, 3)
    xg, yg = next(iter(grey.val_dataloader()))
    xr, yr = next(iter(rgb.val_dataloader()))
    assert xg.shape == (6, 1, 32, 32) and xr.shape == (6, 3, 32, 32)
    assert torch.equal(yg, yr)
    for c in range(3):
        assert torch.equal(xr[:, c], xg[:, 0])
    # normalised with the dataset's mean/std: a resized raw image maps back exactly
    raw = torch.from_numpy(read_idx(root / "train-images-idx3-ubyte.gz")[dm_val_rows(grey)][:, None].copy())
    expect = (TF.resize(raw, [32, 32], antialias=True).float() / 255 - 0.2860) / 0.3530
    assert torch.allclose(xg, expect, atol=1e-5)


def dm_val_rows(dm) -> np.ndarray:
    sp = split_indices(60, 20, train_size=dm.train_size, val_size=dm.val_size, test_size=dm.test_size, seed=dm.seed)
    return sp.val.numpy()


def test_resize_per_batch_when_over_memory_limit(tmp_path):
    root = make_fmnist(tmp_path / "idx")
    once = get_datamodule("fashion-mnist", root=root, input_size=40, batch_size=6, download=False)
    lazy = get_datamodule("fashion-mnist", root=root, input_size=40, batch_size=6, download=False, memory_limit_mb=0)
    once.setup(), lazy.setup()
    assert once.val_set.images.shape[-1] == 40 and lazy.val_set.images.shape[-1] == 28
    a, b = next(iter(once.val_dataloader()))[0], next(iter(lazy.val_dataloader()))[0]
    assert a.shape == b.shape == (6, 1, 40, 40)
    assert (a - b).abs().max() <= 1.0 / (255 * 0.3530) + 1e-5  # only the uint8 rounding differs


# ------------------------------------------------------------------------------ Fashion-MNIST sources
@pytest.mark.parametrize("compress", [True, False])
def test_fashion_mnist_flat_idx_folder(compress, tmp_path):
    root = make_fmnist(tmp_path / "flat", compress=compress)
    dm = get_datamodule("fashion-mnist", root=root, input_size=28, download=False, val_size=6)
    dm.setup()
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (54, 6, 20)


def test_fashion_mnist_falls_back_to_system_folder(tmp_path, monkeypatch):
    system = make_fmnist(tmp_path / "usr-share", n_train=30, n_test=10)
    monkeypatch.setattr(arrays, "FASHION_MNIST_SYSTEM_DIRS", (system,))
    calls = []
    monkeypatch.setattr(arrays, "online", lambda url, timeout=0: calls.append(url) or False)
    dm = get_datamodule("fashion-mnist", root=None, input_size=28, download=True)  # only root=None falls back
    dm.prepare_data()
    dm.setup()
    assert calls, "download=True must try the network first"
    assert (len(dm.train_set) + len(dm.val_set), len(dm.test_set)) == (30, 10)


def test_fashion_mnist_explicit_empty_root_does_not_fall_back(tmp_path, monkeypatch):
    system = make_fmnist(tmp_path / "usr-share", n_train=30, n_test=10)
    monkeypatch.setattr(arrays, "FASHION_MNIST_SYSTEM_DIRS", (system,))
    (tmp_path / "empty").mkdir()
    for download in (False, True):
        dm = get_datamodule("fashion-mnist", root=tmp_path / "empty", input_size=28, download=download)
        with pytest.raises(DataError) as exc:
            dm.prepare_data()
        msg = first_line_only(exc)
        assert msg.startswith(f"dataset.root: {tmp_path / 'empty'} holds no fashion-mnist data")


@pytest.mark.skipif(not (SYSTEM_FMNIST / "train-images-idx3-ubyte.gz").is_file(), reason="dataset-fashion-mnist not installed")
def test_fashion_mnist_real_debian_package(tmp_path, monkeypatch):
    monkeypatch.setattr(arrays, "FASHION_MNIST_SYSTEM_DIRS", (SYSTEM_FMNIST,))
    dm = get_datamodule("fashion-mnist", root=None, input_size=28, train_size=100, val_size=50,
                        test_size=50, download=False)
    dm.setup()
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (100, 50, 50)
    x, y = next(iter(dm.val_dataloader()))
    assert x.shape == (50, 1, 28, 28) and len(set(y.tolist())) > 5


def test_fashion_mnist_nowhere_is_one_line(tmp_path):
    dm = get_datamodule("fashion-mnist", root=None, input_size=28, download=False)  # default folder: empty
    with pytest.raises(DataError) as exc:
        dm.prepare_data()
    msg = first_line_only(exc)
    assert "apt-get install dataset-fashion-mnist" in msg and "dataset.root" in msg and "internet" in msg


def test_fashion_mnist_partial_folder_names_missing_file(tmp_path):
    root = make_fmnist(tmp_path / "idx")
    (root / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError) as exc:
        get_datamodule("fashion-mnist", root=root, input_size=28, download=False).prepare_data()
    assert "t10k-labels-idx1-ubyte" in first_line_only(exc)


@pytest.mark.parametrize("damage", ["magic", "truncated", "not-gzip"])
def test_malformed_idx_is_one_line(damage, tmp_path):
    root = make_fmnist(tmp_path / "idx")
    path = root / "train-images-idx3-ubyte.gz"
    if damage == "magic":
        with gzip.open(path, "wb") as fh:
            fh.write(b"\x00\x00\x09\x03" + bytes(100))
    elif damage == "truncated":
        blob = gzip.decompress(path.read_bytes())
        path.write_bytes(gzip.compress(blob[:-10]))
    else:
        path.write_bytes(b"plain text, not gzip")
    dm = get_datamodule("fashion-mnist", root=root, input_size=28, download=False)
    with pytest.raises(DataError) as exc:
        dm.setup()
    assert str(path) in first_line_only(exc)


# ------------------------------------------------------------------------------ CIFAR-10
def test_cifar10_reads_batches_and_grey(tmp_path):
    root = make_cifar(tmp_path, per_batch=6)
    dm = get_datamodule("cifar10", root=root / "cifar-10-batches-py", input_size=32, val_size=5, download=False)
    dm.setup()
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (25, 5, 6)
    grey = get_datamodule("cifar10", root=root, input_size=32, val_size=5, download=False, in_channels=1)
    x, _ = next(iter(grey.test_dataloader()))
    assert x.shape == (6, 1, 32, 32)


@pytest.mark.parametrize("damage", ["missing", "garbage", "evil"])
def test_cifar10_bad_folder_is_one_line(damage, tmp_path):
    root = make_cifar(tmp_path)
    target = root / "cifar-10-batches-py" / "data_batch_3"
    if damage == "missing":
        target.unlink()
    elif damage == "garbage":
        target.write_bytes(b"not a pickle")
    else:  # a pickle that would run code: refused, never executed
        class Evil:
            def __reduce__(self):
                return (exec, ("raise SystemExit('executed')",))
        target.write_bytes(pickle.dumps({"data": Evil()}))
    dm = get_datamodule("cifar10", root=root, input_size=32, download=False)
    with pytest.raises(DataError) as exc:
        dm.prepare_data() if damage == "missing" else dm.setup()
    msg = first_line_only(exc)
    assert str(target) in msg and "cifar-10-batches-py" in msg


# ------------------------------------------------------------------------------ folders
def test_vww_labels_follow_folders_and_cache_matches_lazy(tmp_path):
    root = make_folder(tmp_path / "vww", {"person": 9, "non_person": 7}, size=24)
    kw = dict(root=root, input_size=16, batch_size=32, val_size=2, test_size=2, seed=0)
    cached = get_datamodule("vww", cache_dir=tmp_path / "cache", **kw)
    lazy = get_datamodule("vww", cache=False, **kw)
    assert cached.classes == ["non_person", "person"] and cached.num_classes == 2
    cached.setup(), lazy.setup()
    assert len(list((tmp_path / "cache").iterdir())) == 1
    xc, yc = next(iter(cached.train_dataloader()))
    xl, yl = next(iter(lazy.train_dataloader()))
    assert torch.equal(xc, xl) and torch.equal(yc, yl)
    assert int(yc.sum()) + int(cached.val_set.labels.sum()) + int(cached.test_set.labels.sum()) == 9
    # person/ was generated darker than non_person/: label 1 (person) really follows the folder
    assert xc[yc == 1].mean() < xc[yc == 0].mean()
    again = get_datamodule("vww", cache_dir=tmp_path / "cache", **kw)  # reuses the cache
    again.setup()
    assert torch.equal(next(iter(again.train_dataloader()))[0], xc)


def test_imagefolder_with_train_test_split(tmp_path):
    root = tmp_path / "split"
    make_folder(root / "train", {"a": 8, "b": 8})
    make_folder(root / "test", {"a": 3, "b": 2}, seed=1)
    dm = get_datamodule("imagefolder", root=root, input_size=16, val_size=4, cache_dir=tmp_path / "cache")
    dm.setup()
    assert dm.classes == ["a", "b"]
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (12, 4, 5)


@pytest.mark.parametrize(
    "name, build, expect",
    [
        ("vww", lambda r: r, "not found"),
        ("vww", lambda r: make_folder(r, {"person": 3}), "non_person"),
        ("imagefolder", lambda r: (r.mkdir(parents=True), r)[1], "class folder"),
        ("imagefolder", lambda r: make_folder(r, {"a": 3, "b": 0}), "<class>"),
        ("imagefolder", lambda r: make_folder(r, {"only": 3}), ">= 2 classes"),
    ],
)
def test_bad_folder_is_one_line(name, build, expect, tmp_path):
    root = build(tmp_path / "data")
    with pytest.raises(DataError) as exc:
        get_datamodule(name, root=root, input_size=16, cache_dir=tmp_path / "cache")
    msg = first_line_only(exc)
    assert str(root) in msg and expect in msg


def test_corrupt_image_is_one_line(tmp_path):
    root = make_folder(tmp_path / "vww", {"person": 4, "non_person": 4})
    (root / "person" / "1.jpg").write_bytes(b"not a jpeg")
    dm = get_datamodule("vww", root=root, input_size=16, cache=False, val_size=1, test_size=1)
    dm.setup()
    with pytest.raises(DataError) as exc:
        for loader in (dm.train_dataloader(), dm.val_dataloader(), dm.test_dataloader()):
            list(loader)
    assert "1.jpg" in first_line_only(exc)


# ------------------------------------------------------------------------------ factory
def test_unknown_dataset_and_option(tmp_path):
    with pytest.raises(ConfigError, match="dataset.name: unknown dataset 'mnist'"):
        get_datamodule("mnist", input_size=28)
    with pytest.raises(ConfigError, match="dataset.cache_dir: not an option of fashion-mnist"):
        get_datamodule("fashion-mnist", input_size=28, cache_dir=tmp_path)
    with pytest.raises(ConfigError, match="dataset.root: required for vww"):
        get_datamodule("vww", input_size=96)
    with pytest.raises(ConfigError, match="in_channels"):
        get_datamodule("fashion_mnist", input_size=28, in_channels=2)


# ------------------------------------------------------------------------------ loading and augmentation
def _dataset(n: int = 20, size: int = 12, augment: bool = True) -> TensorImageDataset:
    images = np.random.default_rng(0).integers(0, 256, (n, 1, size, size), dtype=np.uint8)
    return TensorImageDataset(images, torch.arange(n), BatchTransform(size, (0.5,), (0.25,), 1, augment))


def test_loader_order_and_augmentation_depend_only_on_seed_epoch_batch():
    ds = _dataset()
    first = [(x.clone(), y.clone()) for x, y in batch_loader(ds, 6, shuffle=True, seed=5)]
    again = [(x, y) for x, y in batch_loader(ds, 6, shuffle=True, seed=5)]
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(first, again))
    loader = batch_loader(ds, 6, shuffle=True, seed=5)
    epoch0, epoch1 = [y for _, y in loader], [y for _, y in loader]
    assert not all(torch.equal(a, b) for a, b in zip(epoch0, epoch1))  # next pass, next epoch
    loader.sampler.set_epoch(0)  # what Lightning does on resume
    assert all(torch.equal(a, y) for a, (_, y) in zip(epoch0, loader))
    assert sorted(torch.cat(epoch0).tolist()) == list(range(20))


def test_workers_give_the_same_batches():
    ds = _dataset()
    main = [x for x, _ in batch_loader(ds, 8, shuffle=True, seed=1)]
    workers = [x for x, _ in batch_loader(ds, 8, shuffle=True, seed=1, num_workers=1)]
    assert all(torch.equal(a, b) for a, b in zip(main, workers))


def test_sampler_lengths_and_drop_last():
    assert len(SeededBatchSampler(10, 4, shuffle=False, seed=0)) == 3
    assert len(SeededBatchSampler(10, 4, shuffle=False, seed=0, drop_last=True)) == 2
    assert [list(b) for b in SeededBatchSampler(5, 2, shuffle=False, seed=0)] == [[0, 1], [2, 3], [4]]


@pytest.mark.parametrize("pad", [1, 3])
def test_random_crop_flip_matches_torchvision_per_image(pad):
    x = torch.rand(9, 2, 10, 10)
    out = random_crop_flip(x, pad, torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(0)  # replay the same draws
    dy = torch.randint(0, 2 * pad + 1, (9, 1, 1), generator=g).flatten()
    dx = torch.randint(0, 2 * pad + 1, (9, 1, 1), generator=g).flatten()
    flip = (torch.rand(9, 1, 1, generator=g) < 0.5).flatten()
    for i in range(9):
        ref = TF.crop(TF.pad(x[i], [pad]), int(dy[i]), int(dx[i]), 10, 10)
        ref = TF.horizontal_flip(ref) if flip[i] else ref
        assert torch.equal(out[i], ref)
    assert flip.any() and not flip.all()


def test_augment_only_on_train(tmp_path):
    root = make_fmnist(tmp_path / "idx")
    dm = get_datamodule("fashion-mnist", root=root, input_size=28, batch_size=64, download=False, augment=True)
    dm.setup()
    assert dm.train_set.transform.augment and not dm.val_set.transform.augment and not dm.test_set.transform.augment


def test_unwritable_cache_falls_back_to_decoding(tmp_path):
    root = make_folder(tmp_path / "vww", {"person": 4, "non_person": 4})
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the cache folder should be")
    dm = get_datamodule("vww", root=root, input_size=16, val_size=1, test_size=1, cache_dir=blocker)
    dm.setup()
    assert type(dm.train_set).__name__ == "ImageFileDataset"
    assert next(iter(dm.train_dataloader()))[0].shape == (6, 3, 16, 16)
