"""Energy meters: one interface, the best available method per device.

Every meter is used as ``begin()`` ... ``end() -> Reading`` around one
measurement window, and names its method, whether it is an estimate and its
relative uncertainty, so every figure in a result says how it was obtained.

Methods, best first:

- ``nvml-counter`` (CUDA): difference of ``nvmlDeviceGetTotalEnergyConsumption``
  (mJ since driver load; Volta and newer). A power sampler runs beside it only
  to draw the trace and watch for other processes on the GPU.
- ``nvml-power-sampling`` (CUDA, no counter): a thread polls
  ``nvmlDeviceGetPowerUsage`` (mW) every 50 ms (never slower than 100 ms) and
  the energy is the trapezoid integral of the samples.
- ``rapl`` (CPU): package domains ``intel-rapl:N`` under ``/sys/class/powercap``
  (``AUDIT_POWERCAP_ROOT`` or ``options["powercap_root"]`` to point elsewhere),
  never core/uncore/dram on top of the package they belong to, with counter
  wrap-around at ``max_energy_range_uj``. DRAM sub-zones (``intel-rapl:N:M``
  named ``dram``) are read beside the package into ``Reading.domains``.

Rule for DRAM (both for RAPL and the estimate): the energy figure
(``Reading.energy_j``) is the CPU package; DRAM is reported beside it in
``Reading.domains["dram"]`` and not added, so a RAPL figure, an estimate and
earlier package-only results compare like with like.
- ``estimate-tdp`` (CPU, nothing readable): a documented model (see
  ``TdpEstimateMeter``): the TDP share of the logical CPUs the OS shows (the CPU
  identified by name, CPUID or cloud instance type in CodeCarbon's tables,
  ``cpu_table.py``) x a load curve measured with RAPL; DRAM from resident memory
  x W/GB beside it. Always ``estimated=True``; every assumed figure is in
  ``Reading.assumptions``; the uncertainty is an asymmetric interval.
- ``amdsmi-counter`` (ROCm): difference of amdsmi's energy counter (``amdsmi.py``).

Boundaries (``boundary.py``): ``select_meter`` wraps the device meter in a
``BoundaryMeter`` that reads the host's CPU package and DRAM over the same
windows (powercap, or the estimate where it is unreadable) and gives every
reading ``boundaries``: device, host (device + the audit's share of package +
DRAM) and facility (host x PUE).

Nothing here imports torch or pynvml at module import time: the web process
imports this module (through the fingerprint) without paying for either.
"""

from .base import (  # noqa: F401 - the interface, imported from here
    GPU_MAX_PLAUSIBLE_W,
    UNCERTAINTY,
    Meter,
    MeterError,
    Reading,
    plausibility_flags,
)
from . import cpu_table  # noqa: F401
from .cpu_estimate import (  # noqa: F401
    CPU_TIME_OVER_THREADS_TOLERANCE,
    IDLE_FRACTION_SOURCE,
    MEMORY_W_PER_GB,
    MEMORY_W_SOURCE,
    OTHER_PROCESSES_CONTENDED_CPUS,
    TdpEstimateMeter,
    cpu_tdp_per_logical_cpu,
    idle_fraction_of_tdp,
)
from .amdsmi import AmdSmiCounterMeter, select_amdsmi_meter  # noqa: F401
from .boundary import BOUNDARIES, HOST_SHARE_RULE, BoundaryMeter  # noqa: F401
from .gpu_estimate import GPU_DEFAULT_TDP_W, GpuTdpEstimateMeter  # noqa: F401
from .nvml_common import (  # noqa: F401
    CONTENTION_CHECK_EVERY_S,
    NVML_SAMPLE_INTERVAL_S,
    _text,
    foreign_processes,
    mig_parent,
    nvml_module,
    resolve_nvml_handle,
    trapezoid_j,
    visible_index,
)
from .nvml_counter import NVML_COUNTER_RESOLUTION_S, NvmlCounterMeter  # noqa: F401
from .nvml_sampling import NvmlSamplingMeter  # noqa: F401
from .powercap import PowercapHostMeter, select_host_meter  # noqa: F401
from .rapl import (  # noqa: F401
    CPU_MAX_PLAUSIBLE_W_PER_PACKAGE,
    RAPL_POLL_S,
    RaplDomain,
    RaplMeter,
    powercap_root,
    rapl_dram_domains,
    rapl_package_domains,
)


def select_nvml_meter(device: str, options: dict) -> Meter:
    try:
        nvml = nvml_module()
        nvml.nvmlInit()
    except Exception as exc:  # noqa: BLE001 - ImportError, NVMLError, OSError...
        try:  # torch on ROCm names its GPUs "cuda": an AMD GPU with amdsmi is measured by its counter
            return select_amdsmi_meter(device, options)
        except MeterError:
            pass
        return GpuTdpEstimateMeter(options, "nvml-unavailable", str(exc))
    try:
        handle, uuid = resolve_nvml_handle(nvml, device, options)
    except (nvml.NVMLError, MeterError) as exc:
        nvml.nvmlShutdown()
        return GpuTdpEstimateMeter(options, "nvml-device-not-found", str(exc))
    handle, is_mig = mig_parent(nvml, handle)
    flags = ["mig"] if is_mig else []
    try:
        nvml.nvmlDeviceGetTotalEnergyConsumption(handle)
        return NvmlCounterMeter(nvml, handle, uuid, flags=flags, options=options)
    except (nvml.NVMLError, AttributeError):
        pass
    try:
        nvml.nvmlDeviceGetPowerUsage(handle)
    except (nvml.NVMLError, AttributeError):
        nvml.nvmlShutdown()
        return GpuTdpEstimateMeter(options, "nvml-power-unavailable")
    return NvmlSamplingMeter(
        nvml, handle, uuid, flags=flags + ["counter-unavailable-sampled"], options=options
    )



def select_meter(device: str, options: dict) -> Meter:
    """The best meter available for ``device`` ("cpu", "cuda", "cuda:N", "rocm", "rocm:N"), in a
    ``BoundaryMeter`` that adds the host and facility boundaries to every reading (``boundary.py``;
    ``options["boundaries"] = False`` returns the device meter alone).

    options: cpu_tdp_w, cpu_idle_w, memory_w_per_gb, threads, gpu_tdp_w, gpu_uuid, powercap_root, rapl_poll_s,
    nvml_sample_interval_s, cloud_instance_type, host_share, pue, pue_known, pue_source, and
    energy_method to force "estimate-tdp".
    """
    options = options or {}
    meter = select_device_meter(device, options)
    if options.get("boundaries") is False:
        return meter
    if device.startswith(("cuda", "rocm")):
        host, how = select_host_meter(options)
        return BoundaryMeter(meter, host, kind="gpu", options=options, host_how=how)
    return BoundaryMeter(meter, None, kind="cpu", options=options)


def select_device_meter(device: str, options: dict) -> Meter:
    """The best meter of the device alone (see ``select_meter``)."""
    options = options or {}
    forced = options.get("energy_method")
    if device.startswith("cuda"):
        return select_nvml_meter(device, options)
    if device.startswith("rocm"):
        return select_amdsmi_meter(device, options)
    if forced == "estimate-tdp":
        return TdpEstimateMeter(options)
    root = powercap_root(options)
    domains, present = rapl_package_domains(root)
    if domains:
        return RaplMeter(domains, options, dram_domains=rapl_dram_domains(root))
    return TdpEstimateMeter(options, flags=["rapl-unreadable"] if present else [])
