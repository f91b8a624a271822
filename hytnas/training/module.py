"""``HybridClassifier``: the LightningModule that trains one candidate (no Ray, no MLflow here).

Logged metrics (epoch means): ``train_loss`` (with label smoothing, as optimised),
``val_loss`` / ``test_loss`` (plain cross-entropy, comparable across settings) and
``val_accuracy`` / ``test_accuracy`` (top-1 fraction, ``torchmetrics.MulticlassAccuracy``).

Checkpoints restore with ``HybridClassifier.load_from_checkpoint(path)`` or
``trainer.fit(..., ckpt_path=path)``: the hyper-parameters are plain values (the arch as
``ArchCfg.to_dict()`` plus its name, the settings as a dict).
"""
from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics.classification import MulticlassAccuracy

from hytnas.config import TrainSettings
from hytnas.errors import ConfigError, TrainingError
from hytnas.models import ArchCfg, build_model

log = logging.getLogger(__name__)


def _as_arch(arch: ArchCfg | Mapping[str, Any]) -> ArchCfg:
    if isinstance(arch, ArchCfg):
        return arch
    try:
        return ArchCfg.from_dict(dict(arch))
    except (KeyError, TypeError) as exc:
        raise ConfigError(f"arch: not an ArchCfg dict ({exc})") from None


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Two optimiser groups: weights of rank >= 2 decay, biases and norm parameters do not."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.ndim >= 2 else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


class HybridClassifier(pl.LightningModule):
    """Image classifier ``build_model(arch, num_classes, in_channels, input_size)`` trained with
    cross-entropy and the optimiser / schedule of ``settings``."""

    def __init__(
        self,
        arch: ArchCfg | Mapping[str, Any],
        num_classes: int,
        in_channels: int = 3,
        input_size: int = 224,
        settings: TrainSettings | Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        arch = _as_arch(arch)
        if settings is None:
            settings = TrainSettings()
        elif not isinstance(settings, TrainSettings):
            settings = TrainSettings.from_dict(settings)
        self.save_hyperparameters({
            "arch": {**arch.to_dict(), "name": arch.name},
            "num_classes": num_classes, "in_channels": in_channels, "input_size": input_size,
            "settings": settings.to_dict(),
        })
        self.arch, self.settings = arch, settings
        with torch.random.fork_rng(devices=[]):  # seeded init, global RNG left as it was
            torch.manual_seed(settings.seed)
            self.model = build_model(arch, num_classes, in_channels, input_size, dropout=settings.dropout)
        self.val_accuracy = MulticlassAccuracy(num_classes, average="micro")
        self.test_accuracy = MulticlassAccuracy(num_classes, average="micro")
        self.example_input_array = torch.zeros(1, in_channels, input_size, input_size)
        self._channels_last = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.model(x)  # (B, C, S, S) -> (B, num_classes)

    # ------------------------------------------------------------------ steps
    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        loss = F.cross_entropy(self(x), y, label_smoothing=self.settings.label_smoothing)
        if not torch.isfinite(loss):  # diverged: fail the trial now (Tune retries it at most failure.max_failures times)
            raise TrainingError(f"training loss is {loss.item()} at epoch {self.current_epoch} (batch {batch_idx}); "
                                "lower training.lr or use gradient-friendlier settings")
        self.log("train_loss", loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=y.shape[0])
        return loss

    def _eval_step(self, batch: tuple[torch.Tensor, torch.Tensor], split: str, accuracy: MulticlassAccuracy) -> None:
        x, y = batch
        logits = self(x)
        accuracy.update(logits, y)
        self.log(f"{split}_loss", F.cross_entropy(logits, y), on_epoch=True, prog_bar=True, batch_size=y.shape[0])
        self.log(f"{split}_accuracy", accuracy, on_epoch=True, prog_bar=True)

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._eval_step(batch, "val", self.val_accuracy)

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._eval_step(batch, "test", self.test_accuracy)

    # ------------------------------------------------------------------ setup
    def on_fit_start(self) -> None:
        if self.settings.channels_last and not self._channels_last:
            if self.device.type == "cuda":
                self.model.to(memory_format=torch.channels_last)
                self._channels_last = True
            else:
                log.debug("channels_last ignored on %s (GPU only)", self.device)

    def configure_optimizers(self) -> dict[str, Any]:
        s = self.settings
        groups = param_groups(self.model, s.weight_decay)
        if s.optimizer == "adamw":
            opt: torch.optim.Optimizer = torch.optim.AdamW(groups, lr=s.lr)
        elif s.optimizer == "adam":
            opt = torch.optim.Adam(groups, lr=s.lr)
        else:
            opt = torch.optim.SGD(groups, lr=s.lr, momentum=s.momentum, nesterov=s.momentum > 0)
        sched = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=s.lr_decay)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "epoch"}}
