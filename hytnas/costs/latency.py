"""Measured batch-1 latency of a built model, on the device of its parameters (CPU, or CUDA with
``torch.cuda.synchronize()`` after the warm-up and after every timed pass)."""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from hytnas.errors import ConfigError


@dataclass(frozen=True)
class LatencyResult:
    """Latency of ``runs`` timed forward passes (milliseconds): median and inter-quartile range."""

    median_ms: float
    iqr_ms: float
    p25_ms: float
    p75_ms: float
    runs: int
    threads: int
    min_ms: float = float("nan")  # fastest run: the least disturbed by other processes on a shared machine


def measure_latency(model: nn.Module, input_size: int, in_channels: int = 3, threads: int = 1, runs: int = 30,
                    warmup: int = 5) -> LatencyResult:
    """Time ``runs`` batch-1 forward passes after ``warmup`` untimed ones, in eval mode under
    ``torch.inference_mode()`` with ``threads`` intra-op threads. The previous thread count and
    the model's train/eval mode are restored afterwards."""
    for name, value, low in (("input_size", input_size, 1), ("in_channels", in_channels, 1),
                             ("threads", threads, 1), ("runs", runs, 1), ("warmup", warmup, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ConfigError(f"{name}: must be an integer >= {low}, got {value!r}")
    p = next(model.parameters(), None)
    device = p.device if p is not None else torch.device("cpu")
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    x = torch.randn(1, in_channels, input_size, input_size, device=device,
                    generator=torch.Generator(device=device).manual_seed(0))
    prev_threads, was_training = torch.get_num_threads(), model.training
    times = np.empty(runs)
    try:
        torch.set_num_threads(threads)
        model.eval()
        with torch.inference_mode():
            for _ in range(warmup):
                model(x)
            sync()
            for i in range(runs):
                t0 = time.perf_counter()
                model(x)
                sync()
                times[i] = (time.perf_counter() - t0) * 1e3
    finally:
        torch.set_num_threads(prev_threads)
        model.train(was_training)
    p25, median, p75 = np.percentile(times, [25, 50, 75])
    return LatencyResult(float(median), float(p75 - p25), float(p25), float(p75), runs, threads, float(times.min()))
