"""hytnas.training: settings, the LightningModule, the trainer factory, train_candidate and
checkpoints, on a tiny learnable dataset through the real data pipeline."""
from __future__ import annotations

import ast
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from hytnas.data.arrays import ArrayDataModule
from hytnas.errors import ConfigError, TrainingError
from hytnas.models import ArchCfg, BlockCfg
from hytnas.training import OPTIMIZERS, HybridClassifier, TrainSettings, make_trainer, train_candidate

#: stem, one MV2 block and one MobileViT block: builds in milliseconds, trains in ~1 s per epoch
TINY = ArchCfg(
    blocks=(BlockCfg("mv2", c=8, s=2, e=2), BlockCfg("mobilevit", c=8, t=1, h=2, f=1, p=2)),
    stem_chs=8, head_chs=16, name="tiny",
)
SIZE, CLASSES = 16, 4


class Bars(ArrayDataModule):
    """4 classes: a bright horizontal bar in one of 4 bands of a noisy 16x16 grey image."""

    name = "bars"
    native_channels = 1
    mean, std = (0.3,), (0.3,)

    @property
    def classes(self) -> list[str]:
        return [f"band{k}" for k in range(CLASSES)]

    def prepare_data(self) -> None:
        pass

    def _load_arrays(self):
        rng = np.random.default_rng(0)

        def make(n: int) -> tuple[np.ndarray, np.ndarray]:
            y = np.arange(n) % CLASSES
            x = rng.integers(0, 90, (n, 1, SIZE, SIZE), dtype=np.uint8)
            for k in range(CLASSES):
                x[y == k, :, 4 * k : 4 * k + 3, :] = 230
            return x, y

        return (*make(320), *make(64))


def bars(**kw) -> Bars:
    return Bars(input_size=SIZE, batch_size=32, val_size=64, seed=0, **kw)


@pytest.fixture(autouse=True)
def one_thread():
    """One intra-op thread (as one Ray trial per CPU): stable and fast on a shared 2-core box."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


# ------------------------------------------------------------------------------ settings
def test_settings_round_trip_and_defaults():
    s = TrainSettings(epochs=2, optimizer="sgd", precision=None)
    assert s.precision == "32-true"
    assert TrainSettings.from_dict(s.to_dict()) == s
    assert (TrainSettings().lr, TrainSettings().lr_decay) == (0.002, 0.95)


@pytest.mark.parametrize(
    "field, value",
    [("epochs", 0), ("epochs", 1.5), ("batch_size", True), ("optimizer", "lamb"), ("lr", 0.0), ("lr", math.nan),
     ("lr_decay", 1.5), ("weight_decay", -1.0), ("label_smoothing", 1.0), ("precision", "fp8"),
     ("channels_last", "yes"), ("seed", -1), ("dropout", 1.0)],
)
def test_bad_settings_name_the_field(field, value):
    with pytest.raises(ConfigError) as exc:
        TrainSettings(**{field: value})
    assert str(exc.value).startswith(f"training.{field}:") and "\n" not in str(exc.value)


def test_unknown_setting_is_named():
    with pytest.raises(ConfigError, match="training.momentun: unknown setting"):
        TrainSettings.from_dict({"momentun": 0.9})


# ------------------------------------------------------------------------------ module
@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_configure_optimizers(optimizer):
    module = HybridClassifier(TINY, CLASSES, 1, SIZE, TrainSettings(optimizer=optimizer, weight_decay=0.05, lr=0.01))
    conf = module.configure_optimizers()
    opt, sched = conf["optimizer"], conf["lr_scheduler"]["scheduler"]
    assert type(opt).__name__.lower() == optimizer
    decay, no_decay = opt.param_groups
    assert decay["weight_decay"] == 0.05 and no_decay["weight_decay"] == 0.0
    assert all(p.ndim >= 2 for p in decay["params"]) and all(p.ndim < 2 for p in no_decay["params"])
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(module.parameters()))
    assert conf["lr_scheduler"]["interval"] == "epoch"
    opt.step(), sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.01 * 0.95)


def test_seeded_init_leaves_global_rng_alone():
    state = torch.get_rng_state()
    a = HybridClassifier(TINY, CLASSES, 1, SIZE, TrainSettings(seed=3))
    b = HybridClassifier(TINY, CLASSES, 1, SIZE, TrainSettings(seed=3))
    c = HybridClassifier(TINY, CLASSES, 1, SIZE, TrainSettings(seed=4))
    assert torch.equal(torch.get_rng_state(), state)
    wa, wb, wc = (next(m.model.parameters()) for m in (a, b, c))
    assert torch.equal(wa, wb) and not torch.equal(wa, wc)


@pytest.mark.parametrize("smoothing", [0.0, 0.2])
def test_label_smoothing_in_train_loss_only(smoothing):
    module = HybridClassifier(TINY, CLASSES, 1, SIZE, TrainSettings(label_smoothing=smoothing))
    x, y = torch.randn(8, 1, SIZE, SIZE), torch.arange(8) % CLASSES
    logged = {}
    module.log = lambda name, value, **kw: logged.__setitem__(name, value)  # no Trainer here
    loss = module.training_step((x, y), 0)
    logits = module(x)
    assert torch.allclose(loss, F.cross_entropy(logits, y, label_smoothing=smoothing))
    if smoothing:
        assert not torch.allclose(loss, F.cross_entropy(logits, y))
    module.eval()
    module.validation_step((x, y), 0)
    assert torch.allclose(logged["val_loss"], F.cross_entropy(module(x), y))  # plain CE, comparable


# ------------------------------------------------------------------------------ trainer
def test_make_trainer_defaults(tmp_path):
    t = make_trainer(TrainSettings(epochs=2, precision="bf16-mixed"), accelerator="cpu", enable_progress_bar=False)
    assert t.max_epochs == 2 and t.checkpoint_callback is None and t.logger is None
    assert t.precision == "32-true"  # mixed precision is GPU-only
    t = make_trainer(TrainSettings(), checkpoint_dir=tmp_path, max_steps=3, accelerator="cpu")
    assert t.checkpoint_callback is not None and Path(t.checkpoint_callback.dirpath) == tmp_path and t.max_steps == 3


def test_trains_and_reports_metrics():
    dm = bars(augment=True)
    m = train_candidate(TINY, dm, TrainSettings(epochs=3, lr=0.01, batch_size=32, channels_last=True), accelerator="cpu")
    assert set(m) == {"val_accuracy", "val_loss", "train_loss", "test_accuracy", "test_loss", "epochs", "train_time_s"}
    assert m["epochs"] == 3 and m["train_time_s"] > 0
    assert all(math.isfinite(v) for v in m.values())
    assert m["val_accuracy"] > 0.5 and m["test_accuracy"] > 0.5  # chance is 0.25: it learns


def test_batch_size_of_settings_wins():
    dm = bars()
    train_candidate(TINY, dm, TrainSettings(epochs=1, batch_size=64), accelerator="cpu", limit_train_batches=1,
                    limit_val_batches=1, limit_test_batches=1)
    assert dm.batch_size == 64 and len(dm.train_dataloader()) == 4  # (320 - 64) // 64


def test_checkpoint_round_trip_and_exact_resume(tmp_path):
    settings2 = TrainSettings(epochs=2, seed=1)
    straight = train_candidate(TINY, bars(augment=True), settings2, accelerator="cpu")
    first = train_candidate(TINY, bars(augment=True), settings2.model_copy(update={"epochs": 1}), accelerator="cpu",
                            checkpoint_dir=tmp_path)
    ckpt = tmp_path / "last.ckpt"
    assert ckpt.is_file() and first["epochs"] == 1
    restored = HybridClassifier.load_from_checkpoint(ckpt)
    assert restored.arch == TINY and restored.arch.name == "tiny" and restored.settings.epochs == 1
    dm = Bars.load_from_checkpoint(ckpt)  # the datamodule's arguments travel too
    assert (dm.augment, dm.val_size, dm.batch_size, dm.seed) == (True, 64, 32, 0)
    resumed = train_candidate(TINY, bars(augment=True), settings2, accelerator="cpu", ckpt_path=ckpt,
                              checkpoint_dir=tmp_path)
    assert resumed["epochs"] == 2
    for k in ("val_loss", "val_accuracy", "train_loss", "test_loss"):
        assert resumed[k] == pytest.approx(straight[k], rel=1e-5), k  # same batches, same state
    again = train_candidate(TINY, bars(augment=True), settings2, accelerator="cpu")
    assert {k: v for k, v in again.items() if k != "train_time_s"} == \
        {k: v for k, v in straight.items() if k != "train_time_s"}


def test_restored_module_predicts_identically(tmp_path):
    dm = bars()
    train_candidate(TINY, dm, TrainSettings(epochs=1), accelerator="cpu", checkpoint_dir=tmp_path,
                    limit_train_batches=2, limit_val_batches=1, limit_test_batches=1)
    restored = HybridClassifier.load_from_checkpoint(tmp_path / "last.ckpt").eval()
    x = next(iter(dm.val_dataloader()))[0]
    state = torch.load(tmp_path / "last.ckpt", weights_only=True)["state_dict"]
    fresh = HybridClassifier(TINY, CLASSES, 1, SIZE).eval()
    assert not torch.allclose(fresh(x), restored(x))
    fresh.load_state_dict(state)
    assert torch.equal(fresh(x), restored(x))


def test_training_and_data_import_neither_ray_nor_mlflow():
    root = Path(__file__).resolve().parents[2] / "hytnas"
    for path in [*(root / "training").glob("*.py"), *(root / "data").glob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            assert not any(n.split(".")[0] in ("ray", "mlflow") for n in names), f"{path} imports {names}"


def test_nan_training_loss_fails_with_one_clear_error():
    module = HybridClassifier(TINY, CLASSES, 1, SIZE)
    module.log = lambda *a, **kw: None  # no Trainer here
    x, y = torch.full((8, 1, SIZE, SIZE), float("nan")), torch.arange(8) % CLASSES
    with pytest.raises(TrainingError) as exc:
        module.training_step((x, y), 3)
    assert str(exc.value).startswith("training loss is nan at epoch 0 (batch 3)")
    assert isinstance(exc.value, RuntimeError)
