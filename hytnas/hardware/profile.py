"""Device profiles: what a target device is, as data (YAML validated with pydantic).

A profile names the device, its kind (``host``, ``cpu``, ``gpu``, ``mcu``), its memory limits
and how the latency of an arch on it is obtained (``latency.method``):

- ``measured``: timed in the trial on the machine that trains (the host); a *reported*
  objective;
- ``lut``: the sum of a per-unit latency lookup table profiled on the device with
  ``hytnas profile`` (``latency.path``: the folder it wrote, or its ``lut.json``), corrected by
  a residual fitted on the end-to-end latencies of the validation archs profiled with it;
- ``learned``: a predictor file written by ``hytnas predictor fit`` (``latency.path``);
- ``analytic``: an MCU estimate from MACs per operator class and memory traffic, with
  per-operator rates; an *estimate* until ``calibrated: true``.

The last three make latency a *known* objective (computed for every candidate, see
:func:`hytnas.devices.latency_fn`). Relative paths are resolved against the YAML file's folder.
Memory limits become exact constraints on the cost model's ``peak_sram_kb`` and
``model_size_kb`` (:func:`memory_constraints`).
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from hytnas.errors import HardwareError
from hytnas.objectives import Constraint
from hytnas.utils import read_yaml

PROFILE_DIR = Path(__file__).parent / "profiles"
KINDS = ("host", "cpu", "gpu", "mcu")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MemoryLimits(_Strict):
    """Memory available to the model (int8 deployment, MCUNet convention)."""

    sram_kb: float | None = Field(None, gt=0, description="SRAM for activations, kB (1 kB = 1024 B)")
    flash_kb: float | None = Field(None, gt=0, description="flash for the weights, kB")
    sram_reserved_kb: float = Field(0, ge=0, description="SRAM kept for the runtime, kB")
    flash_reserved_kb: float = Field(0, ge=0, description="flash kept for code and the runtime, kB")

    @model_validator(mode="after")
    def _reserve_fits(self) -> MemoryLimits:
        if self.sram_kb is not None and self.sram_reserved_kb >= self.sram_kb:
            raise ValueError("sram_reserved_kb must be smaller than sram_kb")
        if self.flash_kb is not None and self.flash_reserved_kb >= self.flash_kb:
            raise ValueError("flash_reserved_kb must be smaller than flash_kb")
        return self


class MeasuredLatency(_Strict):
    """Latency timed in the trial (``hytnas.costs.measure_latency``), batch 1."""

    method: Literal["measured"]
    threads: int = Field(1, ge=1, description="torch threads while timing")
    runs: int = Field(30, ge=1, description="timed runs (the median is reported)")
    warmup: int = Field(5, ge=0, description="untimed runs first")


class LutLatency(_Strict):
    """A per-unit lookup table profiled on the device (``hytnas profile --out DIR``)."""

    method: Literal["lut"]
    path: str | None = Field(None, description="the folder `hytnas profile` wrote, or its lut.json; null: not profiled yet")
    residual: bool = Field(True, description="correct the LUT sum with a residual fitted on the profiled validation archs")


class LearnedLatency(_Strict):
    """A predictor fitted on latencies measured on the device (``hytnas predictor fit``)."""

    method: Literal["learned"]
    path: str | None = Field(None, description="predictor JSON written by `hytnas predictor fit`; null: not fitted yet")


class AnalyticLatency(_Strict):
    """MCU estimate: ``sum_ops MACs_op / (rate_op * clock) + bytes / bandwidth + overhead``."""

    method: Literal["analytic"]
    clock_mhz: float = Field(gt=0, description="core clock, MHz")
    macs_per_cycle: dict[Literal["conv", "dwconv", "linear", "attention"], float] = Field(
        description="sustained int8 MACs per cycle of each operator class (conv: dense/pointwise conv, "
                    "dwconv: depthwise conv, linear: matmuls of Linear layers, attention: q.k and attn.v)")
    bytes_per_cycle: float = Field(gt=0, description="activation + weight traffic, bytes per cycle")
    elementwise_cycles: float = Field(0.0, ge=0, description="cycles per activation element of each unit (norms, softmax, activations)")
    overhead_ms: float = Field(0.0, ge=0, description="fixed per-inference overhead, ms")
    calibrated: bool = Field(False, description="true once the rates were fitted to latencies measured on the board")

    @model_validator(mode="after")
    def _all_rates(self) -> AnalyticLatency:
        missing = [k for k in ("conv", "dwconv", "linear", "attention") if k not in self.macs_per_cycle]
        if missing:
            raise ValueError(f"macs_per_cycle needs a rate for {', '.join(missing)}")
        if any(v <= 0 for v in self.macs_per_cycle.values()):
            raise ValueError("macs_per_cycle rates must be > 0")
        return self


LatencySpec = Annotated[
    MeasuredLatency | LutLatency | LearnedLatency | AnalyticLatency, Field(discriminator="method")
]


class DeviceProfile(_Strict):
    """One target device (the content of a profile YAML file)."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$", description="profile name (letters, digits, . _ -)")
    kind: Literal["host", "cpu", "gpu", "mcu"]
    description: str = ""
    memory: MemoryLimits = Field(default_factory=MemoryLimits)
    input_size: int | None = Field(None, ge=8, le=1024, description="input resolution the device runs; null: the space's")
    latency: LatencySpec
    how_to: str = Field("", description="how to produce the files the latency method needs")
    source: str | None = Field(None, description="the YAML file this profile was read from (set by the loader)")

    @property
    def latency_is_known(self) -> bool:
        """True when the latency is computed from the arch (lut, learned, analytic)."""
        return self.latency.method != "measured"

    def resolve(self, path: str | None) -> Path | None:
        """``path`` against the profile file's folder (absolute paths unchanged)."""
        if path is None:
            return None
        p = Path(path).expanduser()
        if not p.is_absolute() and self.source:
            p = Path(self.source).parent / p
        return p


# ------------------------------------------------------------------------------ loading
def list_profiles() -> list[str]:
    """Names of the shipped profiles."""
    return sorted(p.stem for p in PROFILE_DIR.glob("*.yaml"))


def _loc(err: Mapping[str, Any]) -> str:
    # drop the discriminator tag pydantic inserts into union locations ("latency.lut.path")
    parts = [str(x) for x in err["loc"]]
    if len(parts) >= 2 and parts[0] == "latency" and parts[1] in ("measured", "lut", "learned", "analytic"):
        parts.pop(1)
    return ".".join(parts) or "profile"


def profile_from_dict(data: Mapping[str, Any], source: str | None = None) -> DeviceProfile:
    where = f"device profile {source}" if source else "device profile"
    if not isinstance(data, Mapping):
        raise HardwareError(f"{where}: must be a mapping with name, kind and latency")
    try:
        return DeviceProfile.model_validate({**data, "source": source})
    except ValidationError as exc:
        err = exc.errors()[0]
        if err["type"] in ("union_tag_invalid", "union_tag_not_found"):
            field, msg = "latency.method", "must be one of measured, lut, learned, analytic"
        else:
            field, msg = _loc(err), err["msg"].removeprefix("Value error, ")
        raise HardwareError(f"{where}: field {field}: {msg}") from None


def load_profile(path: str | Path) -> DeviceProfile:
    path = Path(path)
    data = read_yaml(path, "device profile", HardwareError)
    return profile_from_dict(data, source=str(path.resolve()))


def get_profile(name_or_path: str | Path | Mapping[str, Any] | DeviceProfile) -> DeviceProfile:
    """A shipped profile by name (:func:`list_profiles`), a profile YAML file, or a dict."""
    if isinstance(name_or_path, DeviceProfile):
        return name_or_path
    if isinstance(name_or_path, Mapping):
        return profile_from_dict(name_or_path)
    key = str(name_or_path)
    if key in list_profiles():
        return load_profile(PROFILE_DIR / f"{key}.yaml")
    if key.endswith((".yaml", ".yml")) or Path(key).is_file():
        if not Path(key).is_file():
            raise HardwareError(f"device profile: file {key} does not exist")
        return load_profile(key)
    raise HardwareError(
        f"device profile: unknown device {key!r}; use a shipped profile ({', '.join(list_profiles())}) or a profile YAML file"
    )


# ------------------------------------------------------------------------------ constraints
def memory_constraints(profile: DeviceProfile) -> tuple[Constraint, ...]:
    """The profile's memory limits as exact constraints on known cost metrics:
    ``peak_sram_kb <= sram_kb - sram_reserved_kb`` and ``model_size_kb <= flash_kb -
    flash_reserved_kb`` (int8, MCUNet convention; only the limits the profile sets)."""
    mem = profile.memory
    out = []
    if mem.sram_kb is not None:
        out.append(Constraint("peak_sram_kb", "<=", float(mem.sram_kb - mem.sram_reserved_kb)))
    if mem.flash_kb is not None:
        out.append(Constraint("model_size_kb", "<=", float(mem.flash_kb - mem.flash_reserved_kb)))
    return tuple(out)
