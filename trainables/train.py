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

Reported keys: ``val_accuracy``, ``val_loss``, ``train_loss``, ``epoch`` (1-based), every
metric of ``hytnas.objectives.COST_METRICS``, ``latency_ms`` and ``arch_id``.

Checkpoint folder (one per epoch; Tune keeps the latest): ``lightning.ckpt`` (the whole training
state: a restored trial continues from it), ``model.pt`` (the bare model ``state_dict``, loadable
with ``weights_only=True``; what ``hytnas export`` ships) and ``trial.json`` (format
``hytnas-trial`` v1: genes, arch id, input size, classes, channels, latency, last metrics).
"""
from __future__ import annotations

import json
import math
import shutil
import tempfile
from pathlib import Path
from typing import Any, Mapping

import pytorch_lightning as pl
import torch

from hytnas.errors import DataError
from hytnas.utils import atomic_write_json

CKPT_FILE = "lightning.ckpt"
WEIGHTS_FILE = "model.pt"
STATE_FILE = "trial.json"
STATE_FORMAT = "hytnas-trial"
STATE_VERSION = 1
#: Metrics Lightning logs per epoch that a report carries.
EPOCH_METRICS = ("val_accuracy", "val_loss", "train_loss")


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
        from ray import tune

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
    """``lightning.ckpt`` + ``model.pt`` + ``trial.json`` in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    trainer.save_checkpoint(folder / CKPT_FILE)
    torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, folder / WEIGHTS_FILE)
    atomic_write_json(folder / STATE_FILE, _jsonable(state))


def _jsonable(x: Any) -> Any:
    if isinstance(x, Mapping):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def read_trial_state(checkpoint_dir: str | Path) -> dict[str, Any]:
    """The ``trial.json`` of a checkpoint folder (genes, arch id, shapes, latency, metrics)."""
    path = Path(checkpoint_dir) / STATE_FILE
    try:
        state = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: unreadable trial state ({type(exc).__name__}); the checkpoint is incomplete") from None
    if state.get("format") != STATE_FORMAT or state.get("version") != STATE_VERSION:
        raise DataError(f"{path}: not a version-{STATE_VERSION} hytnas trial state")
    return state


def train_settings(cfg: Any):
    """``hytnas.training.TrainSettings`` from the ``training`` section of an experiment config."""
    from hytnas.training import TrainSettings

    return TrainSettings.from_dict(cfg.training.model_dump())


def host_latency_ms(arch_cfg: Any, cfg: Any, input_size: int, num_classes: int, in_channels: int) -> float:
    """Median batch-1 latency of a freshly built model on this host's CPU (weights do not matter)."""
    from hytnas.costs import measure_latency
    from hytnas.models import build_model

    model = build_model(arch_cfg, num_classes=num_classes, in_channels=in_channels, input_size=input_size)
    return measure_latency(model, input_size, in_channels, threads=cfg.hardware.latency_threads,
                           runs=cfg.hardware.latency_runs).median_ms


def train_arch(config: dict[str, Any], *, experiment: dict[str, Any]) -> None:
    """Ray Tune function trainable; see the module docstring."""
    from ray import tune

    from hytnas.config import parse_experiment
    from hytnas.costs import arch_costs
    from hytnas.hardware.search import trial_latency_ms
    from hytnas.objectives import COST_METRICS
    from hytnas.search import make_datamodule
    from hytnas.training import train_candidate

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
        latency = saved.get("latency_ms") if saved else None
        if latency is None:
            latency = host_latency_ms(arch_cfg, cfg, *shapes)
        static = {**{k: float(costs[k]) for k in COST_METRICS}, "latency_ms": float(latency),
                  "arch_id": arch_cfg.arch_id}
        # device profile (hytnas.hardware): when it computes latency (lut / learned / analytic), that is
        # the latency_ms the searcher optimised; the host timing is kept as host_latency_ms
        device_ms = trial_latency_ms(cfg.hardware.device, space, arch, num_classes=shapes[1], in_channels=shapes[2])
        if device_ms is not None:
            static.update(latency_ms=device_ms, host_latency_ms=float(latency))
        state = {"format": STATE_FORMAT, "version": STATE_VERSION, "arch_id": arch_cfg.arch_id,
                 "space": space.name, "genes": space.to_config(arch), "input_size": shapes[0],
                 "num_classes": shapes[1], "in_channels": shapes[2], "latency_ms": float(latency)}
        reporter = EpochReporter(static, state, settings.epochs, work)
        out = train_candidate(
            arch_cfg, dm, settings, [reporter], enable_progress_bar=False,
            ckpt_path=None if restored_dir is None else restored_dir / CKPT_FILE,
            accelerator="gpu" if cfg.resources.gpu > 0 else "cpu",
        )
        final_dir, final = reporter.last_dir, reporter.last_metrics
        if final_dir is None:  # restored after its last epoch (e.g. interrupted while testing)
            final_dir, final = restored_dir, {**static, **(saved or {}).get("metrics", {})}
        final = {**final, **{k: float(out[k]) for k in ("test_accuracy", "test_loss", "train_time_s") if k in out},
                 "done": True}
        tune.report(final, checkpoint=tune.Checkpoint.from_directory(str(final_dir)))


def _restore(checkpoint: Any, dest: Path) -> tuple[Path | None, dict[str, Any] | None]:
    """Copy a restored Tune checkpoint to ``dest``; returns the folder and its trial state."""
    if checkpoint is None:
        return None, None
    with checkpoint.as_directory() as d:
        shutil.copytree(d, dest)
    return dest, read_trial_state(dest)
