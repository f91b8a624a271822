"""Costs measured on a built model, to check the analytic model against PyTorch.

:func:`measure_model` runs one batch-1 forward pass and returns

- ``params``: ``sum(p.numel())`` of the trainable parameters;
- ``macs``: ``torch.utils.flop_counter`` FLOPs / 2. On CPU, ``F.scaled_dot_product_attention``
  dispatches to ``aten._scaled_dot_product_flash_attention_for_cpu``, for which ``flop_counter``
  has no formula: it counts **0** there (it does count the CUDA kernels). :data:`SDPA_CPU_MAPPING`
  registers torch's own ``sdpa_flop_count`` (``QK^T`` + ``AV``) for it, so that the count is
  the same on every device and includes the attention matmuls, as the analytic count does;
- ``layers``: ``(name, kind, in_elems, out_elems)`` of every leaf ``Conv2d`` (kind ``conv``) and
  ``Linear`` (kind ``linear``) call in execution order (forward hooks), to compare with the
  ``conv`` / ``linear`` entries of :func:`hytnas.costs.op_trace`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count


def _cpu_sdpa_flop(query_shape: Any, key_shape: Any, value_shape: Any, *args: Any, out_shape: Any = None,
                   **kwargs: Any) -> int:
    return sdpa_flop_count(query_shape, key_shape, value_shape)


#: ``FlopCounterMode(custom_mapping=...)`` entry for the CPU attention kernel
SDPA_CPU_MAPPING = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _cpu_sdpa_flop}


@dataclass(frozen=True)
class Measured:
    """What one traced forward pass of a built model gives (batch 1)."""

    params: int
    macs: int
    layers: tuple[tuple[str, str, int, int], ...]  # (module name, conv | linear, in_elems, out_elems)


def measure_model(model: nn.Module, input_size: int, in_channels: int = 3) -> Measured:
    """Params, ``flop_counter`` MACs and conv/linear tensor sizes of one batch-1 forward pass
    of ``model`` on an ``input_size x input_size`` input (eval mode; the mode is restored)."""
    layers: list[tuple[str, str, int, int]] = []
    handles = []
    for name, mod in model.named_modules():
        kind = "conv" if isinstance(mod, nn.Conv2d) else "linear" if isinstance(mod, nn.Linear) else None
        if kind is not None:
            def hook(m: nn.Module, args: tuple[torch.Tensor, ...], out: torch.Tensor, name: str = name,
                     kind: str = kind) -> None:
                layers.append((name, kind, args[0].numel(), out.numel()))
            handles.append(mod.register_forward_hook(hook))
    p = next(model.parameters(), None)
    x = torch.zeros(1, in_channels, input_size, input_size, device=p.device if p is not None else "cpu")
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode(), FlopCounterMode(display=False, custom_mapping=SDPA_CPU_MAPPING) as counter:
            model(x)
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return Measured(params, counter.get_total_flops() // 2, tuple(layers))
