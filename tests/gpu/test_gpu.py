"""GPU tier: training, checkpoint/resume, latency timing and profiling on a CUDA device.

Skipped as a whole without CUDA (``torch.cuda.is_available()`` False), so ``make test`` on a
CPU machine only reports skips. Run on a GPU machine with::

    HYTNAS_FMNIST_DIR=.gpudata/fashion-mnist python3 -m pytest tests/gpu -q

Imports neither Ray nor MLflow. The training tests use the real Fashion-MNIST data of the
``fmnist_dir`` fixture at its native 28 px (no resize, so torchvision is not needed) and one
small fixed arch of the ``hytnas`` space (82 k params, 1.2 MMACs at 28 px). Each test takes a
few seconds on an H100/H200 (kernel-launch bound).
"""
from __future__ import annotations

import dataclasses
import logging
import math
from pathlib import Path

import pytest
import torch

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (torch.cuda.is_available() is False)"),
]

from pytorch_lightning.callbacks import Callback  # noqa: E402

from hytnas.costs import measure_latency  # noqa: E402
from hytnas.data import get_datamodule  # noqa: E402
from hytnas.hardware import LatencyTable, ProfileSettings, run_profile  # noqa: E402
from hytnas.models import build_model  # noqa: E402
from hytnas.space import Arch, get_space  # noqa: E402
from hytnas.training import HybridClassifier, TrainSettings, train_candidate  # noqa: E402

#: a small arch of the ``hytnas`` space (the 10th percentile by MACs of 64 archs sampled with seed 0)
SMALL = Arch(n2=1, t3=2, t4=4, t5=2, e1=2, e2=2, e3=4, e4=2, e5=4, c1=16, c2=16, c3=24, c4=24, c5=24, h3=4, h4=1,
             h5=4, f3=1, f4=1, f5=1, p3=8, p4=2, p5=4)
SIZE = 28  # Fashion-MNIST's own size
#: after 2 epochs of 39 steps this arch reaches ~0.82 val accuracy on CPU (32-true); chance is 0.1
MIN_VAL_ACCURACY = 0.6


@pytest.fixture(autouse=True)
def quiet_lightning():
    """No per-fit banners in the log."""
    logger = logging.getLogger("pytorch_lightning")
    level = logger.level
    logger.setLevel(logging.WARNING)
    yield
    logger.setLevel(level)


@pytest.fixture(scope="module")
def small_arch():
    space = get_space("hytnas")
    space.validate(SMALL)
    return space.to_arch_cfg(SMALL)


def fmnist(root: Path, **kw):
    """The real subset: 10000 train, 2000 val (from the train pool), the test split of ``root``."""
    return get_datamodule("fashion-mnist", root=root, input_size=SIZE, batch_size=256, train_size=10000,
                          val_size=2000, seed=0, download=False, **kw)


class Inspect(Callback):
    """Records what the trainer and the module actually used."""

    def __init__(self) -> None:
        self.seen: dict[str, object] = {}

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:  # noqa: ANN001
        if batch_idx == 0 and "device" not in self.seen:
            weights = [p for p in pl_module.model.parameters() if p.ndim == 4]
            self.seen.update(
                device=next(pl_module.model.parameters()).device.type,
                batch_device=batch[0].device.type,
                precision=trainer.precision,
                channels_last_flag=pl_module._channels_last,
                conv_weights_channels_last=all(w.is_contiguous(memory_format=torch.channels_last) for w in weights),
                conv_weights_contiguous=all(w.is_contiguous() for w in weights),
            )


def _finite(metrics: dict) -> bool:
    return all(math.isfinite(float(v)) for v in metrics.values())


# ------------------------------------------------------------------------------ training
@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "channels_last"])
@pytest.mark.parametrize("precision", ["32-true", "bf16-mixed", "16-mixed"])
def test_train_candidate_on_gpu(fmnist_dir, small_arch, precision, channels_last):
    if precision == "bf16-mixed" and not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bf16")
    probe = Inspect()
    settings = TrainSettings(epochs=2, batch_size=256, precision=precision, channels_last=channels_last, seed=0)
    m = train_candidate(small_arch, fmnist(fmnist_dir), settings, [probe], accelerator="gpu", devices=1)
    assert set(m) == {"val_accuracy", "val_loss", "train_loss", "test_accuracy", "test_loss", "epochs", "train_time_s"}
    assert _finite(m), m
    assert m["epochs"] == 2
    assert m["val_accuracy"] > MIN_VAL_ACCURACY and m["test_accuracy"] > MIN_VAL_ACCURACY, m
    seen = probe.seen
    assert seen["device"] == "cuda" and seen["batch_device"] == "cuda", seen
    assert seen["precision"] == precision, seen
    assert seen["channels_last_flag"] is channels_last, seen
    if channels_last:
        assert seen["conv_weights_channels_last"], seen
    else:
        assert seen["conv_weights_contiguous"], seen


@pytest.mark.parametrize("precision", ["32-true", "16-mixed"])  # 16-mixed: the GradScaler state travels too
def test_checkpoint_resume_on_gpu(fmnist_dir, small_arch, tmp_path, precision):
    settings2 = TrainSettings(epochs=2, batch_size=256, precision=precision, seed=1)
    limits = dict(limit_train_batches=12, limit_val_batches=4, limit_test_batches=4)
    straight = train_candidate(small_arch, fmnist(fmnist_dir), settings2, accelerator="gpu", devices=1, **limits)
    first = train_candidate(small_arch, fmnist(fmnist_dir), dataclasses.replace(settings2, epochs=1),
                            accelerator="gpu", devices=1, checkpoint_dir=tmp_path, **limits)
    ckpt = tmp_path / "last.ckpt"
    assert ckpt.is_file() and first["epochs"] == 1
    state = torch.load(ckpt, map_location="cpu", weights_only=False)
    if precision == "16-mixed":
        assert state.get("MixedPrecision"), sorted(state)  # the GradScaler's scale and growth tracker
    restored = HybridClassifier.load_from_checkpoint(ckpt, map_location="cpu")
    assert restored.settings.precision == precision and restored.arch.name == small_arch.name
    resumed = train_candidate(small_arch, fmnist(fmnist_dir), settings2, accelerator="gpu", devices=1, ckpt_path=ckpt,
                              checkpoint_dir=tmp_path, **limits)
    assert resumed["epochs"] == straight["epochs"] == 2
    assert _finite(resumed) and _finite(straight)
    # the same batches and state; GPU kernels are not bit-deterministic, so only close
    assert abs(resumed["val_loss"] - straight["val_loss"]) < 0.1 * straight["val_loss"], (resumed, straight)


# ------------------------------------------------------------------------------ latency
class Heavy(torch.nn.Module):
    """A forward of a known, large GPU cost: ``k`` chained ``n x n`` matmuls."""

    def __init__(self, n: int = 4096, k: int = 8) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.randn(n, n) / n**0.5)
        self.k = k

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.w
        for _ in range(self.k):
            y = y @ self.w
        return x.sum() + y.sum()


def test_measure_latency_on_cuda(small_arch):
    model = build_model(small_arch, 10, 1, SIZE).cuda().train()
    r = measure_latency(model, SIZE, 1, runs=20, warmup=5)
    assert r.runs == 20 and math.isfinite(r.median_ms) and r.median_ms > 0 and r.min_ms > 0
    assert r.iqr_ms >= 0 and r.p25_ms <= r.median_ms <= r.p75_ms
    assert model.training and next(model.parameters()).device.type == "cuda"  # mode and device unchanged


def test_measure_latency_waits_for_the_gpu():
    """The timed region ends after ``torch.cuda.synchronize``: a forward of ~1 TFLOP is not
    reported as the microseconds its kernel launches take."""
    model = Heavy().cuda()
    x = torch.randn(1, 1, 8, 8, device="cuda")
    with torch.inference_mode():
        model(x)
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        model(x)
        end.record()
        torch.cuda.synchronize()
    gpu_ms = start.elapsed_time(end)
    r = measure_latency(model, 8, 1, runs=5, warmup=1)
    assert r.median_ms >= 0.5 * gpu_ms, (r, gpu_ms)


def test_run_profile_on_cuda(tmp_path):
    space = get_space("hytnas-tiny")
    settings = ProfileSettings(input_size=space.input_size, torch_device="cuda", coverage="sample", sample=3, runs=5,
                               warmup=2, warmup_s=0.2, n_validate=4, validate_runs=5, validate_warmup=2)
    res = run_profile(space, tmp_path, settings, device_name="gpu test")
    assert res.lut_path.is_file() and res.validation_path.is_file()
    assert res.n_units > 0 and res.n_units_timed_now == res.n_units and res.n_validate_timed_now == 4
    table = LatencyTable.load(tmp_path)
    assert table.complete and len(table) == res.n_units and table.meta["torch_device"] == "cuda"
    for key, entry in table.entries.items():
        assert entry["median_ms"] > 0 and entry["min_ms"] > 0 and math.isfinite(entry["iqr_ms"]), (key, entry)
    from hytnas.table import read_arch_table

    archs, df = read_arch_table(res.validation_path, space, metrics=("latency_ms", "latency_median_ms"))
    assert len(archs) == 4 and (df["latency_ms"] > 0).all() and (df["latency_median_ms"] > 0).all()
