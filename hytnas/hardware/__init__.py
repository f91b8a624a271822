"""Hardware awareness: device profiles, latency tables, latency objective providers.

- :func:`get_profile` / :func:`list_profiles` / :class:`DeviceProfile`: profiles as data
  (``hytnas/hardware/profiles/*.yaml`` or any YAML file), :func:`memory_constraints`;
- :func:`latency_fn`: a profile's latency as ``fn(archs) -> Tensor`` (ms), a known objective;
  :func:`latency_objective`: ``latency_ms`` with the right source for the profile;
- :func:`run_profile` (``hytnas profile``): time every unit of a space and a validation set on
  the device; :class:`LatencyTable`: the resulting ``lut.json``;
- :func:`arch_blocks` / :func:`space_block_specs`: a network as units (stem, block repeats, head).
"""
from hytnas.hardware.blocks import BlockSpec, arch_blocks, space_block_specs
from hytnas.hardware.latency import AnalyticLatencyModel, latency_fn, latency_objective
from hytnas.hardware.lut import LatencyTable
from hytnas.hardware.profile import (
    DeviceProfile,
    get_profile,
    list_profiles,
    load_profile,
    memory_constraints,
    profile_from_dict,
)
from hytnas.hardware.profiler import ProfileSettings, run_profile

__all__ = ["DeviceProfile", "get_profile", "list_profiles", "load_profile", "profile_from_dict",
           "memory_constraints", "latency_fn", "latency_objective", "AnalyticLatencyModel", "LatencyTable",
           "ProfileSettings", "run_profile", "BlockSpec", "arch_blocks", "space_block_specs"]
