"""The training trainable: one trial = one arch built, costed, timed and trained with Lightning.

``train_arch(config, *, experiment)`` is a Ray Tune function trainable. ``config`` is the trial
config (the 23 genes, or the latent ``c1, m2..m5`` form; other keys such as ``arch_id`` are
ignored); ``experiment`` is the plain experiment dict (``ExperimentConfig.to_plain()``), bound
once with ``tune.with_parameters`` (see ``hytnas.search.make_trainable``).

What a trial does:

1. limits torch to the trial's CPUs (``max(1, floor(resources.cpu))`` intra-op threads);
2. decodes the arch (``space.from_config`` -> ``to_arch_cfg``) and computes its exact costs
   (``hytnas.costs.arch_costs``);
3. measures the batch-1 latency on the host CPU once, before training (``measure_latency`` with
   ``hardware.latency_threads`` / ``latency_runs``: the median in ms); a restored trial reuses the
   value saved in its checkpoint. When the device profile computes latency from the arch (LUT,
   learned or analytic profiles), that is the reported ``latency_ms`` and the host timing is
   reported as ``host_latency_ms``;
4. trains with ``hytnas.training.train_candidate`` (Lightning, no progress bar, no logger) and
   reports after every epoch with ``tune.report(metrics, checkpoint=...)``; the final epoch's
   report comes after the test split and adds ``test_accuracy``, ``test_loss``,
   ``train_time_s`` and ``done: True``.

Reported keys and the checkpoint folder (one per epoch; Tune keeps the latest): the trial
protocol of :mod:`hytnas.trial`. A restored trial continues from its ``lightning.ckpt``; a trial
whose config continues trials the Tune experiment forgot (:data:`hytnas.trial.RETRY_OF_KEY`, after
a killed driver), or that Tune restored without a checkpoint, continues from the newest checkpoint
in its own folder or else in those trials' folders (:func:`hytnas.trial.newest_checkpoint`): a
finished trial that Tune forgot is not retrained.
"""
from __future__ import annotations

import shutil
import socket
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import ray
import torch
from ray import tune

from hytnas.config import parse_experiment
from hytnas.costs import arch_costs, measure_latency
from hytnas.data import make_datamodule
from hytnas.devices import trial_latency_ms
from hytnas.models import build_model
from hytnas.objectives import COST_METRICS
from hytnas.training import TrainSettings, train_candidate
from hytnas.trial import (
    CKPT_FILE,
    EPOCH_METRICS,
    FINAL_METRICS,
    TUNE_DIR,
    new_state,
    newest_checkpoint,
    read_trial_state,
    retry_of,
    write_trial_files,
)


class EpochReporter(pl.Callback):
    """After each validation: write the epoch's checkpoint folder and ``tune.report`` it.

    The last epoch is held back (``last_dir``, ``last_metrics``): :func:`train_arch` reports it
    once the test split is evaluated, with ``done: True``.
    """

    def __init__(self, static: Mapping[str, Any], state: Mapping[str, Any], epochs: int, workdir: str | Path) -> None:
        self.static = dict(static)
        self.state = dict(state)
        self.epochs = int(epochs)
        self.workdir = Path(workdir)
        self.last_dir: Path | None = None
        self.last_metrics: dict[str, Any] = {}

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        epoch = int(trainer.current_epoch) + 1
        logged = trainer.callback_metrics
        metrics = {**{k: float(logged[k]) for k in EPOCH_METRICS if k in logged}, "epoch": epoch, **self.static}
        folder = self.workdir / f"epoch-{epoch}"
        save_checkpoint(folder, trainer, pl_module.model, {**self.state, "metrics": metrics})
        if epoch < self.epochs:
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(str(folder)))
            shutil.rmtree(folder, ignore_errors=True)  # Tune has copied it into the experiment folder
        else:
            self.last_dir, self.last_metrics = folder, metrics


def save_checkpoint(folder: Path, trainer: pl.Trainer, model: torch.nn.Module, state: Mapping[str, Any]) -> None:
    """The trial's checkpoint folder: ``lightning.ckpt`` + the files of :func:`hytnas.trial.write_trial_files`."""
    folder.mkdir(parents=True, exist_ok=True)
    trainer.save_checkpoint(folder / CKPT_FILE)
    write_trial_files(folder, model, state)


def train_settings(cfg: Any) -> TrainSettings:
    """``hytnas.training.TrainSettings`` from the ``training`` section of an experiment config."""
    return TrainSettings.from_dict(cfg.training.model_dump())


def host_latency_ms(arch_cfg: Any, cfg: Any, input_size: int, num_classes: int, in_channels: int) -> float:
    """Median batch-1 latency of a freshly built model on this host's CPU (weights do not matter)."""
    model = build_model(arch_cfg, num_classes=num_classes, in_channels=in_channels, input_size=input_size)
    return measure_latency(model, input_size, in_channels, threads=cfg.hardware.latency_threads,
                           runs=cfg.hardware.latency_runs).median_ms


def train_arch(config: dict[str, Any], *, experiment: dict[str, Any]) -> None:
    """Ray Tune function trainable; see the module docstring."""
    cfg = parse_experiment(experiment)
    torch.set_num_threads(max(1, int(cfg.resources.cpu)))
    space = cfg.build_space()
    arch = space.from_config(config)
    arch_cfg = space.to_arch_cfg(arch)
    dm = make_datamodule(cfg, space.input_size)
    shapes = (space.input_size, dm.num_classes, dm.in_channels)
    settings = train_settings(cfg)
    costs = arch_costs(arch_cfg, *shapes)

    with tempfile.TemporaryDirectory(prefix="hytnas-trial-") as work:
        restored_dir, saved = _restore(tune.get_checkpoint(), Path(work) / "restored")
        if restored_dir is None:  # Tune's snapshot had no checkpoint of it (a killed driver): its folder's
            # newest, or that of the earlier trials it continues (forgotten by Tune)
            found = newest_checkpoint(cfg.storage_dir / TUNE_DIR, [tune.get_context().get_trial_id(), *retry_of(config)])
            if found is not None:
                restored_dir, saved = _restore(tune.Checkpoint.from_directory(str(found)), Path(work) / "restored")
        latency = saved.get("latency_ms") if saved else None
        if latency is None:
            latency = host_latency_ms(arch_cfg, cfg, *shapes)
        static = {**{k: float(costs[k]) for k in COST_METRICS}, "latency_ms": float(latency),
                  "arch_id": arch_cfg.arch_id, **where()}
        # device profile (hytnas.hardware): when it computes latency (lut / learned / analytic), that is
        # the latency_ms the searcher optimised; the host timing is kept as host_latency_ms
        device_ms = trial_latency_ms(cfg.hardware.device, space, arch, num_classes=shapes[1], in_channels=shapes[2])
        if device_ms is not None:
            static.update(latency_ms=device_ms, host_latency_ms=float(latency))
        state = new_state(space, arch, arch_cfg.arch_id, *shapes, latency)
        reporter = EpochReporter(static, state, settings.epochs, work)
        out = train_candidate(
            arch_cfg, dm, settings, [reporter], enable_progress_bar=False,
            ckpt_path=None if restored_dir is None else restored_dir / CKPT_FILE,
            accelerator="gpu" if cfg.resources.gpu > 0 else "cpu",
        )
        final_dir, final = reporter.last_dir, reporter.last_metrics
        if final_dir is None:  # restored after its last epoch (e.g. interrupted while testing)
            final_dir, final = restored_dir, {**static, **(saved or {}).get("metrics", {})}
        final = {**final, **{k: float(out[k]) for k in FINAL_METRICS if k in out},
                 "done": True}
        tune.report(final, checkpoint=tune.Checkpoint.from_directory(str(final_dir)))


def where() -> dict[str, str]:
    """Where this trial runs: ``node_id`` (the Ray node id, hex) and ``hostname``."""
    return {"node_id": ray.get_runtime_context().get_node_id(), "hostname": socket.gethostname()}


def _restore(checkpoint: Any, dest: Path) -> tuple[Path | None, dict[str, Any] | None]:
    """Copy a restored Tune checkpoint to ``dest``; returns the folder and its trial state."""
    if checkpoint is None:
        return None, None
    with checkpoint.as_directory() as d:
        shutil.copytree(d, dest)
    return dest, read_trial_state(dest)
