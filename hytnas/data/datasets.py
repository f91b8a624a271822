"""Batched image datasets: one ``__getitem__`` call returns a whole, ready batch.

Small images live as one ``uint8`` array ``(N, C, H, W)`` (in memory, or memory-mapped from the
disk cache so that concurrent trials share the OS page cache). Indexing with a *list* of indices
returns a normalised ``float32`` batch ``(B, C, S, S)`` and its ``int64`` labels ``(B,)``: the
per-item Python work of a ``TensorDataset`` + ``default_collate`` (and per-item PIL transforms)
disappears. The loaders use PyTorch's documented batched-loading mode (a batch sampler as ``sampler``,
``batch_size=None``, see :func:`hytnas.data.base.batch_loader`). Indexing with an ``int`` returns a
single ``(C, S, S)`` sample, so the datasets also work with a plain ``DataLoader``.

Conventions: images are ``uint8`` in ``[0, 255]``; the batch transform resizes when the stored
size differs from the input size (bilinear, antialiased), applies the optional augmentation
(random crop with zero padding of ``S // 8`` and horizontal flip), scales to ``[0, 1]`` and
normalises with the dataset's per-channel mean/std; grey images are repeated to 3 channels last.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset, get_worker_info

from hytnas.errors import DataError

Index = int | Sequence[int] | np.ndarray | torch.Tensor


@dataclass(frozen=True)
class BatchTransform:
    """``uint8 (B, C, h, w)`` -> normalised ``float32 (B, out_channels, S, S)``.

    ``mean``/``std`` are per *stored* channel (``C``) on the ``[0, 1]`` scale; ``out_channels``
    may be ``C`` or 3 when ``C == 1`` (grey images repeated).
    """

    input_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    out_channels: int
    augment: bool = False
    _scale: torch.Tensor = field(init=False, repr=False, compare=False)
    _shift: torch.Tensor = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if len(self.mean) != len(self.std):
            raise ValueError("mean and std need one value per stored channel")
        mean = torch.tensor(self.mean, dtype=torch.float32).view(1, -1, 1, 1)
        std = torch.tensor(self.std, dtype=torch.float32).view(1, -1, 1, 1)
        # (x / 255 - mean) / std == x * scale + shift, one fused op from uint8
        object.__setattr__(self, "_scale", 1.0 / (255.0 * std))
        object.__setattr__(self, "_shift", -mean / std)

    @property
    def pad(self) -> int:
        return max(self.input_size // 8, 1)

    def __call__(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        s = self.input_size
        x = images  # (B, C, h, w) uint8
        if x.shape[-2:] != (s, s):
            x = F.interpolate(x.float(), size=(s, s), mode="bilinear", antialias=True, align_corners=False)
        if self.augment:
            x = random_crop_flip(x, self.pad, generator)  # (B, C, S, S), zero (black) padding
        x = torch.addcmul(self._shift, x, self._scale)  # (B, C, S, S) float32, normalised
        if self.out_channels != x.shape[1]:
            x = x.expand(-1, self.out_channels, -1, -1).contiguous()  # (B, 3, S, S) from grey
        return x


def random_crop_flip(x: torch.Tensor, pad: int, generator: torch.Generator | None) -> torch.Tensor:
    """Per-sample random crop of a zero-padded batch and random horizontal flip, as one gather.

    Same distribution as torchvision's ``RandomCrop(S, padding=pad)`` + ``RandomHorizontalFlip()``
    applied image by image, without a Python loop over the batch. Any dtype, on ``x``'s device.
    """
    b, c, h, w = x.shape
    hp, wp = h + 2 * pad, w + 2 * pad
    xp = F.pad(x, (pad, pad, pad, pad))  # (B, C, Hp, Wp)
    dev = x.device  # the generator must live there too (a CUDA batch needs a CUDA generator)
    dy = torch.randint(0, 2 * pad + 1, (b, 1, 1), generator=generator, device=dev)
    dx = torch.randint(0, 2 * pad + 1, (b, 1, 1), generator=generator, device=dev)
    flip = torch.rand(b, 1, 1, generator=generator, device=dev) < 0.5
    cols = dx + torch.arange(w, device=dev).view(1, 1, w)  # (B, 1, W)
    cols = torch.where(flip, cols.flip(2), cols)
    flat = (dy + torch.arange(h, device=dev).view(1, h, 1)) * wp + cols  # (B, H, W) positions in the padded image
    out = xp.reshape(b, c, hp * wp).gather(2, flat.view(b, 1, h * w).expand(b, c, h * w))  # (B, C, H*W)
    return out.view(b, c, h, w)


class _BatchedDataset(Dataset):
    """Shared indexing and augmentation-RNG handling of the two datasets below."""

    def __init__(self, labels: torch.Tensor, transform: BatchTransform, seed: int) -> None:
        self.labels = labels.to(torch.int64)
        self.transform = transform
        self.seed = int(seed)
        self._gen: torch.Generator | None = None
        self._gen_pid: int | None = None

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def _generator(self, index: object) -> torch.Generator:
        """The augmentation generator of a batch: seeded with the batch's own seed when the
        sampler gives one (:class:`hytnas.data.base.BatchIndices`); otherwise one stream per
        process, from ``seed`` (main process) or the DataLoader's per-worker seed."""
        batch_seed = getattr(index, "seed", None)
        if batch_seed is not None:
            return torch.Generator().manual_seed(int(batch_seed))
        pid = os.getpid()
        if self._gen is None or self._gen_pid != pid:
            info = get_worker_info()
            self._gen = torch.Generator().manual_seed(info.seed if info is not None else self.seed)
            self._gen_pid = pid
        return self._gen

    def _raw(self, idx: np.ndarray) -> torch.Tensor:  # (B, C, h, w) uint8
        raise NotImplementedError

    def __getitem__(self, index: Index) -> tuple[torch.Tensor, torch.Tensor]:
        single = isinstance(index, (int, np.integer)) or (isinstance(index, torch.Tensor) and index.ndim == 0)
        idx = np.atleast_1d(np.asarray(index, dtype=np.int64))
        if idx.size and (idx.min() < -len(self) or idx.max() >= len(self)):
            raise IndexError(f"index out of range for a dataset of {len(self)} images")
        idx = np.where(idx < 0, idx + len(self), idx)
        gen = self._generator(index) if self.transform.augment else None
        x = self.transform(self._raw(idx), gen)  # (B, C', S, S)
        y = self.labels[torch.from_numpy(idx)]  # (B,)
        return (x[0], y[0]) if single else (x, y)


class TensorImageDataset(_BatchedDataset):
    """Images in one ``uint8`` array ``(N, C, H, W)`` (numpy, possibly a read-only memmap).

    ``index`` (optional) maps dataset positions to rows of ``images`` so that a subset of a
    memory-mapped cache is used without copying it; ``labels`` are per dataset position.
    """

    def __init__(
        self,
        images: np.ndarray,
        labels: torch.Tensor,
        transform: BatchTransform,
        *,
        index: np.ndarray | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(labels, transform, seed)
        if images.ndim != 4 or images.dtype != np.uint8:
            raise ValueError(f"images must be uint8 (N, C, H, W), got {images.dtype} {images.shape}")
        n = len(index) if index is not None else images.shape[0]
        if n != len(self):
            raise ValueError(f"{n} images but {len(self)} labels")
        self.images = images
        self.index = None if index is None else np.asarray(index, dtype=np.int64)

    def _raw(self, idx: np.ndarray) -> torch.Tensor:
        rows = idx if self.index is None else self.index[idx]
        return torch.from_numpy(np.ascontiguousarray(self.images[rows]))


class ImageFileDataset(_BatchedDataset):
    """Image files decoded on demand (for folders too large to hold decoded).

    Every file is decoded by :func:`decode_square` (shorter side resized to ``input_size``,
    centre-cropped to a square), then the batch transform runs.
    """

    def __init__(
        self,
        files: Sequence[str | Path],
        labels: torch.Tensor,
        transform: BatchTransform,
        *,
        channels: int = 3,
        seed: int = 0,
    ) -> None:
        super().__init__(labels, transform, seed)
        if len(files) != len(self):
            raise ValueError(f"{len(files)} files but {len(self)} labels")
        self.files = [str(f) for f in files]
        self.channels = channels

    def load_uint8(self, i: int) -> torch.Tensor:
        """File ``i`` as ``uint8 (C, S, S)`` at the input size (no normalisation)."""
        return decode_square(self.files[i], self.transform.input_size, self.channels)

    def _raw(self, idx: np.ndarray) -> torch.Tensor:
        return torch.stack([self.load_uint8(int(i)) for i in idx])


class _RawFiles(Dataset):
    """Decoded ``uint8`` batches of files, for filling the disk cache with DataLoader workers."""

    def __init__(self, files: Sequence[str], size: int, channels: int) -> None:
        self.files, self.size, self.channels = list(files), size, channels

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, idx: Sequence[int]) -> torch.Tensor:
        return torch.stack([decode_square(self.files[i], self.size, self.channels) for i in idx])


def decode_square(path: str, size: int, channels: int) -> torch.Tensor:
    """``uint8 (channels, size, size)``: decode with PIL (as torchvision's ``ImageFolder``; JPEGs
    are DCT-downscaled while decoding when much larger than ``size``), resize the shorter side to
    ``size`` (antialiased), centre-crop."""
    from PIL import Image
    from torchvision.transforms.v2 import functional as TF

    mode = "RGB" if channels == 3 else "L"
    try:
        with Image.open(path) as im:
            im.draft(mode, (size, size))
            arr = np.asarray(im.convert(mode))
    except (OSError, ValueError, Image.DecompressionBombError) as exc:  # UnidentifiedImageError is an OSError
        raise DataError(f"{path}: cannot decode the image ({str(exc).splitlines()[0]}); remove or replace the file") from None
    img = torch.from_numpy(arr.copy()).view(arr.shape[0], arr.shape[1], channels).permute(2, 0, 1)  # (C, H, W)
    img = TF.resize(img, [size], antialias=True)
    return TF.center_crop(img, [size, size])
