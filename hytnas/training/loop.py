"""``make_trainer`` and ``train_candidate``: fit, validate and test one candidate.

Seeding (no global seeding, no ``pl.seed_everything``): the weights are initialised under
``torch.random.fork_rng`` seeded with ``settings.seed`` (in :class:`HybridClassifier`); the data
order and augmentation come from the datamodule's own seeded ``torch.Generator`` objects; the
rest of the training-time randomness (dropout) draws from the global generator, which
:func:`train_candidate` seeds inside ``fork_rng`` and restores afterwards. The same arch,
datamodule settings and train settings on the same machine and thread count give the same
metrics. A run resumed from a checkpoint restores weights, optimiser, scheduler and loop
counters, but not the data order of an uninterrupted run.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback, ModelCheckpoint

from hytnas.config import TrainSettings
from hytnas.models import ArchCfg
from hytnas.training.module import HybridClassifier

log = logging.getLogger(__name__)


def _uses_gpu(accelerator: Any) -> bool:
    if not torch.cuda.is_available():
        return False
    return accelerator in ("auto", "gpu", "cuda") or getattr(accelerator, "__class__", type(None)).__name__ == "CUDAAccelerator"


def make_trainer(
    settings: TrainSettings,
    *,
    callbacks: Sequence[Callback] = (),
    enable_progress_bar: bool = True,
    default_root_dir: str | Path | None = None,
    accelerator: Any = "auto",
    devices: Any = "auto",
    checkpoint_dir: str | Path | None = None,
    logger: Any = False,
    **trainer_kwargs: Any,
) -> pl.Trainer:
    """A ``pl.Trainer`` for tiny models: ``settings.epochs`` epochs, validation every epoch, no
    sanity-check pass, no model summary, no logger (metrics reach Ray / MLflow through callbacks).

    Checkpointing is off unless ``checkpoint_dir`` is given (``last.ckpt`` written there after
    every epoch) or ``callbacks`` holds a ``ModelCheckpoint``. ``settings.precision`` is used on a
    GPU only (``"32-true"`` on CPU). ``trainer_kwargs`` override any of these (e.g. ``max_steps``).
    """
    callbacks = list(callbacks)
    if checkpoint_dir is not None:
        callbacks.append(ModelCheckpoint(dirpath=str(checkpoint_dir), save_last=True, save_top_k=0))
    precision = settings.precision
    if precision != "32-true" and not _uses_gpu(accelerator):
        log.debug("precision %s ignored without a GPU; training in 32-true", precision)
        precision = "32-true"
    kwargs: dict[str, Any] = dict(
        max_epochs=settings.epochs,
        accelerator=accelerator,
        devices=devices,
        precision=precision,
        logger=logger,
        callbacks=callbacks,
        enable_checkpointing=any(isinstance(cb, ModelCheckpoint) for cb in callbacks),
        enable_model_summary=False,
        enable_progress_bar=enable_progress_bar,
        num_sanity_val_steps=0,
        default_root_dir=None if default_root_dir is None else str(default_root_dir),
    )
    kwargs.update(trainer_kwargs)
    return pl.Trainer(**kwargs)


@contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Seed torch's global generators for the block and restore their state after it."""
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def train_candidate(
    arch: ArchCfg | Mapping[str, Any],
    datamodule: Any,
    settings: TrainSettings,
    callbacks: Sequence[Callback] = (),
    *,
    ckpt_path: str | Path | None = None,
    checkpoint_dir: str | Path | None = None,
    enable_progress_bar: bool = False,
    **trainer_kwargs: Any,
) -> dict[str, float | int]:
    """Fit ``arch`` on ``datamodule`` (validating every epoch), then test; return the metrics.

    Returns ``val_accuracy`` (fraction), ``val_loss``, ``train_loss`` (last epoch),
    ``test_accuracy`` and ``test_loss`` (when the datamodule has a non-empty test split),
    ``epochs`` (epochs completed) and ``train_time_s`` (wall time of the fit, validation
    included, testing excluded). ``ckpt_path`` resumes a fit from a Lightning checkpoint;
    ``checkpoint_dir`` writes ``last.ckpt`` after every epoch. ``settings.batch_size`` is set on
    the datamodule. Other keyword arguments go to :func:`make_trainer`.
    """
    if getattr(datamodule, "batch_size", settings.batch_size) != settings.batch_size:
        log.debug("datamodule batch_size %s -> %s (training settings)", datamodule.batch_size, settings.batch_size)
        datamodule.batch_size = settings.batch_size
    model = HybridClassifier(arch, datamodule.num_classes, datamodule.in_channels, datamodule.input_size, settings)
    trainer = make_trainer(settings, callbacks=callbacks, checkpoint_dir=checkpoint_dir,
                           enable_progress_bar=enable_progress_bar, **trainer_kwargs)
    with seeded(settings.seed + 1):
        t0 = time.perf_counter()
        trainer.fit(model, datamodule=datamodule, ckpt_path=None if ckpt_path is None else str(ckpt_path))
        train_time = time.perf_counter() - t0
        out: dict[str, float | int] = {
            k: float(v) for k, v in trainer.callback_metrics.items() if k in ("val_accuracy", "val_loss", "train_loss")
        }
        datamodule.setup("test")
        test_set = getattr(datamodule, "test_set", None)
        if test_set is not None and len(test_set) > 0 and not trainer.interrupted:
            res = trainer.test(model, datamodule=datamodule, verbose=False)[0]
            out.update({k: float(res[k]) for k in ("test_accuracy", "test_loss") if k in res})
    out["epochs"] = int(trainer.current_epoch)
    out["train_time_s"] = train_time
    return out
