"""Training of one candidate: :class:`TrainSettings`, the :class:`HybridClassifier`
LightningModule, :func:`make_trainer` and :func:`train_candidate` (imports neither Ray nor MLflow).

>>> metrics = train_candidate(arch_cfg, get_datamodule("fashion-mnist", input_size=32), TrainSettings(epochs=1))
>>> metrics["val_accuracy"], metrics["test_accuracy"], metrics["train_time_s"]
"""
from hytnas.config import OPTIMIZERS, PRECISIONS, TrainSettings
from hytnas.training.loop import make_trainer, seeded, train_candidate
from hytnas.training.module import HybridClassifier, param_groups

__all__ = ["TrainSettings", "OPTIMIZERS", "PRECISIONS", "HybridClassifier", "make_trainer", "train_candidate",
           "seeded", "param_groups"]
