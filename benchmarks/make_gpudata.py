"""Small real-data copies of Fashion-MNIST for a device check (``benchmarks/device_check.sh``).

    .venv/bin/python benchmarks/make_gpudata.py                # -> .gpudata/fashion-mnist{,-32px}/

Writes the four IDX ``.gz`` files of the first ``--train`` training and ``--test`` test images:

- ``<out>/fashion-mnist/``: 28x28, the original pixels (what ``HYTNAS_FMNIST_DIR`` points at);
- ``<out>/fashion-mnist-32px/``: the same images resized to 32x32 with the datamodule's own resize
  (torchvision's antialiased uint8 resize, per image), so that a machine without torchvision
  trains at 32 px on exactly the pixels the datamodule would have made (checked here with
  ``--check``).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from hytnas.data.arrays import FASHION_MNIST_FILES, read_idx, write_idx

SOURCE = Path("/usr/share/datasets/fashion-mnist")
OUT = Path(__file__).resolve().parents[1] / ".gpudata"


def resize_uint8(images: np.ndarray, size: int) -> np.ndarray:
    """``(N, H, W)`` uint8 -> ``(N, size, size)`` uint8, as ``ArrayDataModule._to_stored`` resizes."""
    from torchvision.transforms.v2 import functional as TF

    x = torch.from_numpy(np.array(images[:, None]))  # a writable copy
    return torch.cat([TF.resize(c, [size, size], antialias=True) for c in x.split(4096)]).numpy()[:, 0]


def check_32px(dir28: Path, dir32: Path) -> None:
    """The 32 px copy gives the datamodule the same train images as resizing the 28 px one."""
    from hytnas.data import get_datamodule

    sets = []
    for root in (dir28, dir32):
        dm = get_datamodule("fashion-mnist", root=root, input_size=32, train_size=2000, val_size=500, test_size=500,
                            seed=0, download=False)
        dm.setup("fit")
        sets.append(dm.train_set[list(range(len(dm.train_set)))][0])
    if not torch.equal(*sets):
        sys.exit(f"make_gpudata: {dir32} differs from resizing {dir28} in the datamodule")
    print(f"check: {dir32} gives the same 32 px training tensors as resizing {dir28}")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--source", type=Path, default=SOURCE, help="folder of the four original IDX .gz files")
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--train", type=int, default=12000)
    ap.add_argument("--test", type=int, default=2000)
    ap.add_argument("--check", action="store_true", help="verify the 32 px copy against the datamodule's resize")
    args = ap.parse_args(argv)
    dir28, dir32 = args.out / "fashion-mnist", args.out / "fashion-mnist-32px"
    for d in (dir28, dir32):
        d.mkdir(parents=True, exist_ok=True)
    for stem, n in zip(FASHION_MNIST_FILES, (args.train, args.train, args.test, args.test)):
        src = args.source / f"{stem}.gz"
        if not src.is_file():
            sys.exit(f"make_gpudata: {src} is missing; install the Debian package dataset-fashion-mnist or pass --source")
        arr = read_idx(src)[:n]
        write_idx(dir28 / f"{stem}.gz", arr)
        write_idx(dir32 / f"{stem}.gz", resize_uint8(arr, 32) if arr.ndim == 3 else arr)
    for d in (dir28, dir32):
        print(f"wrote {d} ({sum(f.stat().st_size for f in d.iterdir()) / 2**20:.1f} MiB)")
    if args.check:
        check_32px(dir28, dir32)


if __name__ == "__main__":
    main()
