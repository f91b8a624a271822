"""The reference zoo: published sizes, exactness of the cost model, torchvision cross-check."""
from __future__ import annotations

import pytest
import torch
import torchvision

from hytnas.costs import arch_costs, op_trace
from hytnas.costs.measured import measure_model
from hytnas.errors import ConfigError
from hytnas.models import build_model, zoo

ZOO = zoo.names()


@pytest.fixture(autouse=True)
def one_thread():
    prev = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(prev)


def test_names():
    assert ZOO == ["mobilevit_xxs", "mobilevit_xs", "mobilevit_s", "mobilenet_v1_025", "mobilenet_v2_035"]


def test_unknown_name_lists_the_choices():
    with pytest.raises(ConfigError, match="zoo: unknown model 'resnet'; choose one of mobilevit_xxs"):
        zoo.get("resnet")


@pytest.mark.parametrize("name", ZOO)
def test_meta_and_identity(name):
    arch = zoo.get(name)
    info = zoo.info(name)
    assert arch.name == name and zoo.get(name) == arch
    assert {"input_size", "num_classes", "in_channels", "params_m", "macs_m", "source"} <= set(info)


@pytest.mark.parametrize("name,published_m", [("mobilevit_xxs", 1.3), ("mobilevit_xs", 2.3), ("mobilevit_s", 5.6)])
def test_mobilevit_params_within_5_percent_of_published(name, published_m):
    params = arch_costs(zoo.get(name), 256, 1000)["params"]
    assert abs(params / (published_m * 1e6) - 1) < 0.05


@pytest.mark.parametrize("name", ZOO)
def test_close_to_published_figures(name):
    info = zoo.info(name)
    c = arch_costs(zoo.get(name), info["input_size"], info["num_classes"])
    assert abs(c["params"] / (info["params_m"] * 1e6) - 1) < 0.05
    assert abs(c["macs_m"] / info["macs_m"] - 1) < 0.10  # published MACs are rounded to 1-2 digits


@pytest.mark.parametrize("name", ZOO)
def test_cost_model_is_exact_on_the_built_zoo_model(name):
    info = zoo.info(name)
    arch, size, k = zoo.get(name), info["input_size"], info["num_classes"]
    model = build_model(arch, k, input_size=size)
    measured = measure_model(model, size)
    c = arch_costs(arch, size, k)
    assert (c["params"], c["macs"]) == (measured.params, measured.macs)
    trace = [(o.name, o.kind, o.in_elems, o.out_elems) for o in op_trace(arch, size, k) if o.kind in ("conv", "linear")]
    assert trace == list(measured.layers)


def test_mobilenet_v2_035_equals_torchvision():
    ours = zoo.get("mobilenet_v2_035")
    tv = torchvision.models.mobilenet_v2(width_mult=0.35)
    measured = measure_model(tv, 224)
    c = arch_costs(ours, 224, 1000)
    assert (c["params"], c["macs"]) == (measured.params, measured.macs)
    # layer by layer: the same conv shapes in the same order
    convs = lambda m: [(x.in_channels, x.out_channels, x.kernel_size, x.stride, x.groups)  # noqa: E731
                       for x in m.modules() if isinstance(x, torch.nn.Conv2d)]
    assert convs(build_model(ours, 1000)) == convs(tv)


@pytest.mark.parametrize("name", ZOO)
def test_zoo_models_run(name):
    model = build_model(zoo.get(name), num_classes=3).eval()
    with torch.inference_mode():
        assert model(torch.randn(1, 3, 64, 64)).shape == (1, 3)
