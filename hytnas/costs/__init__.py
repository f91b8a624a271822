"""Costs of an arch: exact analytic params, MACs, peak activation memory and model size
(:func:`arch_costs`, pure functions of ``(arch, input_size, num_classes, in_channels)``), and the
measured batch-1 latency of a built model (:func:`measure_latency`).

``hytnas.costs.measured`` checks the analytic numbers against PyTorch (``flop_counter``, hooks).
"""
from hytnas.costs.analytic import (
    BLOCK_COSTS,
    Op,
    Tally,
    arch_costs,
    count_macs,
    count_params,
    model_size,
    op_trace,
    peak_memory,
)
from hytnas.costs.latency import LatencyResult, measure_latency

__all__ = ["arch_costs", "count_params", "count_macs", "peak_memory", "model_size", "op_trace", "Op", "Tally",
           "BLOCK_COSTS", "measure_latency", "LatencyResult"]
