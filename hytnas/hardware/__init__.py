"""Hardware awareness: device profiles, latency tables, the network as units.

- :func:`get_profile` / :func:`list_profiles` / :class:`DeviceProfile`: profiles as data
  (``hytnas/hardware/profiles/*.yaml`` or any YAML file), :func:`memory_constraints`;
- :func:`run_profile` (``hytnas profile``): time every unit of a space and a validation set on
  the device; :class:`LatencyTable`: the resulting ``lut.json``;
- :func:`arch_blocks` / :func:`space_block_specs`: a network as units (stem, block repeats, head).

A profile's latency as an objective of a search (which needs the predictors) is
:mod:`hytnas.devices`.
"""
from hytnas.hardware.blocks import BlockSpec, arch_blocks, space_block_specs
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
           "memory_constraints", "LatencyTable",
           "ProfileSettings", "run_profile", "BlockSpec", "arch_blocks", "space_block_specs"]
