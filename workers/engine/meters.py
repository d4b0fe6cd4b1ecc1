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
  ``TdpEstimateMeter``): the package's idle share + this process's CPU time x
  the dynamic W per logical CPU; DRAM from resident memory x W/GB beside it.
  Always ``estimated=True``; every assumed figure is in ``Reading.assumptions``.

Nothing here imports torch or pynvml at module import time: the web process
imports this module (through the fingerprint) without paying for either.
"""
from __future__ import annotations

import math
import os
import re
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from workers.engine import cpuinfo

# Relative uncertainty of each method (one standard uncertainty, as a fraction
# of the figure). Where each comes from:
# - nvml-counter: nvidia-smi documents board power draw as accurate to
#   +/- 5 W; on a data-centre GPU drawing 100-700 W under load that is 1-5%,
#   we take the conservative 5%. The counter integrates the same sensor.
# - nvml-power-sampling: the same sensor, plus sampling error: on Ampere and
#   newer nvmlDeviceGetPowerUsage returns a 1 s running average and transients
#   shorter than the poll interval are missed (Yang et al. 2024, "Part-time
#   power measurements: nvidia-smi's lack of attention"). Seen here on an H100:
#   over a 3 s bf16 matmul burst from idle the sampled integral read 16% below
#   the counter (the averaged reading lags the ramp); windows that start warm
#   and last 10 s shrink that. Hence 15%.
# - rapl: Intel RAPL is measured, not modelled, since Haswell and tracks
#   external meters within a few percent (Hackenberg et al. 2015); AMD's
#   RAPL is less validated. We use 5% on Intel, 10% when the CPU is AMD.
#   RAPL covers the whole package, not only this process: idle subtraction
#   handles the rest of the machine.
# - estimate-tdp: an attribution, not a measurement. CPU time x TDP share
#   ignores frequency, vector width and memory traffic; 50% for a CPU of the
#   table below. For a CPU not in the table the W per logical CPU is the
#   table's median, and the uncertainty widens to cover the table's spread
#   (ESTIMATE_UNKNOWN_CPU_UNCERTAINTY, computed from the table).
UNCERTAINTY = {
    "nvml-counter": 0.05,
    "nvml-power-sampling": 0.15,
    "rapl": 0.05,
    "rapl-amd": 0.10,
    "estimate-tdp": 0.5,
    "estimate-gpu-tdp": 1.0,
}

NVML_SAMPLE_INTERVAL_S = 0.05  # options["nvml_sample_interval_s"], capped at 0.1
RAPL_POLL_S = 0.1  # options["rapl_poll_s"]; 0 disables the poller (no trace)
CONTENTION_CHECK_EVERY_S = 1.0
NVML_COUNTER_RESOLUTION_S = 0.1  # the counter updates about every 100 ms

# Known CPUs: substring of /proc/cpuinfo "model name" -> (TDP in W of one
# package, logical CPUs of one package). Vendor spec sheets.
KNOWN_CPU_TDP = {
    "EPYC 9654": (360.0, 192),
    "EPYC 7763": (280.0, 128),
    "EPYC 7742": (225.0, 128),
    "EPYC 7543": (225.0, 64),
    "Xeon Platinum 8480": (350.0, 112),
    "Xeon Platinum 8380": (270.0, 80),
    "Xeon Gold 6248R": (205.0, 48),
    "Xeon Gold 6248": (150.0, 40),
    "i9-13900K": (125.0, 32),
    "i7-12700K": (125.0, 20),
    "Ryzen 9 7950X": (170.0, 32),
    "Ryzen 9 5950X": (105.0, 32),
}


def _median(values: list[float]) -> float:
    values = sorted(values)
    mid = len(values) // 2
    return values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2.0


# An unknown CPU gets the median TDP per logical CPU of the table above, and an
# uncertainty that covers the whole table: the largest relative distance of any
# known CPU's W per logical CPU from that median (never below the 50% of a
# known CPU). Both are computed from the table, not chosen.
_TABLE_W_PER_CPU = [tdp / threads for tdp, threads in KNOWN_CPU_TDP.values()]
DEFAULT_W_PER_LOGICAL_CPU = _median(_TABLE_W_PER_CPU)
ESTIMATE_UNKNOWN_CPU_UNCERTAINTY = max(
    UNCERTAINTY["estimate-tdp"],
    max(abs(w - DEFAULT_W_PER_LOGICAL_CPU) for w in _TABLE_W_PER_CPU) / DEFAULT_W_PER_LOGICAL_CPU,
)

# Idle (static) share of a package's power. Cloud Carbon Footprint's compute
# coefficients, averaged from SPECpower_ssj2008 results of the CPUs each cloud
# runs, give about 0.74 W per vCPU at 0% utilisation and 3.5 W at 100% (AWS
# figures: https://www.cloudcarbonfootprint.org/docs/methodology/, Apache-2.0):
# idle is 0.74 / 3.5 = 21% of full load. Quoted from that page as we know it;
# no copy can be fetched here, re-check it there. options["cpu_idle_w"] or
# AUDIT_CPU_IDLE_W (the whole machine's CPU packages at idle) replaces it.
IDLE_FRACTION_OF_TDP = 0.74 / 3.5
IDLE_FRACTION_SOURCE = (
    "Cloud Carbon Footprint methodology: 0.74 W/vCPU idle vs 3.5 W/vCPU full load "
    "(AWS averages of SPECpower_ssj2008), i.e. 21% of TDP"
)
# DRAM power per GB (1e9 bytes) resident: 0.3725 W/GB, the figure of Green Algorithms
# (Lannelongue, Grealey & Inouye 2021, Advanced Science 8:2100707,
# doi:10.1002/advs.202100707). options["memory_w_per_gb"] replaces it.
MEMORY_W_PER_GB = 0.3725
MEMORY_W_SOURCE = "Green Algorithms (Lannelongue et al. 2021, Adv. Sci. 8:2100707): 0.3725 W per GB of memory"
# Process CPU time above this multiple of wall x threads means threads beyond the
# ones asked for were busy (OpenMP spin-wait, inter-op pools, data loading).
CPU_TIME_OVER_THREADS_TOLERANCE = 1.05
# Other processes busier than this many CPUs during a window flag it contended.
OTHER_PROCESSES_CONTENDED_CPUS = 0.5

GPU_DEFAULT_TDP_W = 300.0  # used only when NVML itself is unreachable on CUDA
GPU_MAX_PLAUSIBLE_W = 3000.0
CPU_MAX_PLAUSIBLE_W_PER_PACKAGE = 1000.0


class MeterError(RuntimeError):
    """The meter asked for cannot work on this machine."""


@dataclass
class Reading:
    energy_j: float
    duration_s: float
    avg_power_w: float
    trace: list = field(default_factory=list)  # [(t_s since begin, watts)]
    flags: list = field(default_factory=list)
    # Every assumed figure behind an estimate (None for a hardware meter): see
    # TdpEstimateMeter.assumptions_for. Goes into the measurement as energy_assumptions.
    assumptions: dict | None = None
    # Joules of this window by domain, where the meter has them: {"package": J, "dram": J}.
    # energy_j is the package (see the DRAM rule above); {} when the meter has no domains.
    domains: dict = field(default_factory=dict)


class Meter:
    method: str = ""
    estimated: bool = False
    uncertainty_rel: float = 0.0
    # False for a meter that assumes a constant draw: it cannot see idle, so the idle
    # baseline is not measured with it (0 W, flagged) instead of equalling the load.
    reads_idle: bool = True

    def __init__(self) -> None:
        self.flags: list[str] = []  # standing flags, added to every reading

    def begin(self) -> None:
        raise NotImplementedError

    def end(self) -> Reading:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _reading(self, energy_j: float, duration_s: float, trace, flags, max_w: float) -> Reading:
        avg = energy_j / duration_s if duration_s > 0 else 0.0
        flags = _unique(self.flags + list(flags) + plausibility_flags(energy_j, duration_s, avg, max_w))
        return Reading(energy_j, duration_s, avg, trace, flags)


def plausibility_flags(energy_j: float, duration_s: float, avg_power_w: float, max_w: float) -> list[str]:
    """Never report 0 J silently: a zero or out-of-range reading is flagged."""
    flags = []
    if not math.isfinite(energy_j) or energy_j <= 0.0:
        flags.append("zero-energy")
    if not math.isfinite(avg_power_w) or avg_power_w < 0.0 or avg_power_w > max_w:
        flags.append("implausible-power")
    return flags


def _unique(items):
    seen, out = set(), []
    for item in items:
        if item not in seen:
            seen.add(item)
            out.append(item)
    return out


class _Poller:
    """Calls fn() every interval_s in a daemon thread until stop()."""

    def __init__(self, interval_s: float, fn):
        self._interval = interval_s
        self._fn = fn
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="energy-meter-poller", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self._fn()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


# --------------------------------------------------------------------------- NVML


def nvml_module():
    """Import pynvml lazily (tests inject a fake one into sys.modules)."""
    import pynvml  # noqa: PLC0415

    return pynvml


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def visible_index(device: str) -> int:
    """'cuda' -> 0, 'cuda:2' -> 2: the index among the devices CUDA shows us."""
    _, _, idx = device.partition(":")
    return int(idx) if idx.strip() else 0


def _torch_uuid(index: int) -> str | None:
    """The visible device's UUID as CUDA sees it, when torch already holds CUDA.

    Only consulted when torch is already imported: this module never imports it.
    """
    torch = sys.modules.get("torch")
    if torch is None:
        return None
    try:
        if not torch.cuda.is_available():
            return None
        uuid = str(torch.cuda.get_device_properties(index).uuid)
    except Exception:  # noqa: BLE001 - any failure means: fall back to the env
        return None
    return uuid or None


def _match_uuid(nvml, entry: str) -> str:
    """CUDA accepts UUID prefixes in CUDA_VISIBLE_DEVICES; NVML wants the full UUID."""
    for i in range(nvml.nvmlDeviceGetCount()):
        uuid = _text(nvml.nvmlDeviceGetUUID(nvml.nvmlDeviceGetHandleByIndex(i)))
        if uuid.startswith(entry):
            return uuid
    return entry  # a MIG UUID, or unknown: let nvmlDeviceGetHandleByUUID decide


def resolve_nvml_handle(nvml, device: str, options: dict | None = None):
    """NVML handle of the CUDA device ``device`` names, always fetched by UUID.

    CUDA numbers devices fastest-first unless CUDA_DEVICE_ORDER=PCI_BUS_ID,
    while NVML numbers them in PCI bus order, so index N in torch is not index N
    in NVML. Resolution order:

    1. ``options["gpu_uuid"]`` if given;
    2. ``torch.cuda.get_device_properties(i).uuid`` when torch is imported and
       CUDA is up (the child holds CUDA already when it measures): exact;
    3. ``CUDA_VISIBLE_DEVICES``: its i-th entry; a UUID (or prefix: GPU-..., MIG-...)
       is looked up by UUID; an integer is an NVML (PCI order) index whose UUID
       we then use. That integer mapping is exact only with
       CUDA_DEVICE_ORDER=PCI_BUS_ID (the worker sets it);
    4. no CUDA_VISIBLE_DEVICES: NVML index i, then by its UUID.

    Returns (handle, uuid).
    """
    options = options or {}
    index = visible_index(device)
    candidates = []
    if options.get("gpu_uuid"):
        candidates.append(str(options["gpu_uuid"]))
    uuid = _torch_uuid(index)
    if uuid:
        candidates += [uuid] if uuid.startswith(("GPU-", "MIG-")) else [f"GPU-{uuid}", f"MIG-{uuid}"]
    for cand in candidates:
        try:
            return nvml.nvmlDeviceGetHandleByUUID(cand), cand
        except nvml.NVMLError:
            continue
    cvd = os.environ.get("CUDA_VISIBLE_DEVICES")
    if cvd is not None and cvd.strip():
        entries = [e.strip() for e in cvd.split(",") if e.strip()]
        if index >= len(entries):
            raise MeterError(f"{device} is not visible: CUDA_VISIBLE_DEVICES={cvd!r}")
        entry = entries[index]
        if entry.lstrip("-").isdigit():
            uuid = _text(nvml.nvmlDeviceGetUUID(nvml.nvmlDeviceGetHandleByIndex(int(entry))))
        else:
            uuid = _match_uuid(nvml, entry)
    else:
        uuid = _text(nvml.nvmlDeviceGetUUID(nvml.nvmlDeviceGetHandleByIndex(index)))
    return nvml.nvmlDeviceGetHandleByUUID(uuid), uuid


def mig_parent(nvml, handle):
    """(whole-GPU handle, is_mig). Energy and power exist only for the whole GPU."""
    try:
        if nvml.nvmlDeviceIsMigDeviceHandle(handle):
            return nvml.nvmlDeviceGetDeviceHandleFromMigDeviceHandle(handle), True
    except (nvml.NVMLError, AttributeError):
        pass
    try:
        current, _pending = nvml.nvmlDeviceGetMigMode(handle)
        return handle, bool(current)
    except (nvml.NVMLError, AttributeError):
        return handle, False


def _power_limit_w(nvml, handle) -> float | None:
    try:
        return nvml.nvmlDeviceGetEnforcedPowerLimit(handle) / 1000.0
    except (nvml.NVMLError, AttributeError):
        return None


def _cuda_context_held() -> bool:
    torch = sys.modules.get("torch")
    try:
        return bool(torch is not None and torch.cuda.is_initialized())
    except Exception:  # noqa: BLE001
        return False


def foreign_processes(nvml, handle, own_pids: set[int]) -> list[int]:
    """PIDs of compute processes on the GPU other than ours.

    Inside a container NVML reports host PIDs, so our own PID may not appear.
    When none of the listed PIDs is ours but we hold a CUDA context, one of
    them must be us: then only a second process counts as contention.
    """
    try:
        procs = nvml.nvmlDeviceGetComputeRunningProcesses(handle)
    except (nvml.NVMLError, AttributeError):
        return []
    pids = [int(p.pid) for p in procs]
    others = [p for p in pids if p not in own_pids]
    if len(others) == len(pids) and pids and _cuda_context_held():
        others = others[1:]
    return others


class _NvmlMeter(Meter):
    """Shared by both NVML meters: the handle, the power poller, contention."""

    def __init__(self, nvml, handle, uuid: str, *, flags=(), options: dict | None = None):
        super().__init__()
        options = options or {}
        self.nvml = nvml
        self.handle = handle
        self.uuid = uuid
        self.flags = list(flags)
        self.interval_s = min(float(options.get("nvml_sample_interval_s") or NVML_SAMPLE_INTERVAL_S), 0.1)
        limit = _power_limit_w(nvml, handle)
        self.max_w = limit * 1.5 if limit else GPU_MAX_PLAUSIBLE_W
        self.own_pids = {os.getpid()}
        self._samples: list[tuple[float, float]] = []
        self._lock = threading.Lock()
        self._poller: _Poller | None = None
        self._t0 = 0.0
        self._run_flags: list[str] = []
        self._last_contention_check = 0.0

    def _sample_power(self) -> None:
        try:
            watts = self.nvml.nvmlDeviceGetPowerUsage(self.handle) / 1000.0
        except self.nvml.NVMLError:
            return
        now = time.perf_counter()
        with self._lock:
            self._samples.append((now - self._t0, watts))
        if now - self._last_contention_check >= CONTENTION_CHECK_EVERY_S:
            self._check_contention()

    def _check_contention(self) -> None:
        self._last_contention_check = time.perf_counter()
        if foreign_processes(self.nvml, self.handle, self.own_pids) and "contended" not in self._run_flags:
            self._run_flags.append("contended")

    def _start(self) -> None:
        self._samples = []
        self._run_flags = []
        self._t0 = time.perf_counter()
        self._check_contention()
        self._sample_power()
        self._poller = _Poller(self.interval_s, self._sample_power)
        self._poller.start()

    def _stop(self) -> list[tuple[float, float]]:
        if self._poller is not None:
            self._poller.stop()
            self._poller = None
        self._sample_power()
        self._check_contention()
        with self._lock:
            return list(self._samples)

    def close(self) -> None:
        if self._poller is not None:
            self._poller.stop()
            self._poller = None
        try:
            self.nvml.nvmlShutdown()
        except Exception:  # noqa: BLE001 - closing must not fail a measurement
            pass


def trapezoid_j(samples: list[tuple[float, float]]) -> float:
    return sum((t1 - t0) * (w0 + w1) / 2.0 for (t0, w0), (t1, w1) in zip(samples, samples[1:]))


class NvmlCounterMeter(_NvmlMeter):
    method = "nvml-counter"
    estimated = False
    uncertainty_rel = UNCERTAINTY["nvml-counter"]

    def begin(self) -> None:
        self._start()
        self._t_begin = time.perf_counter()
        try:
            self._e0 = self.nvml.nvmlDeviceGetTotalEnergyConsumption(self.handle)
        except BaseException:
            self._stop()  # never leave the poller running into later windows
            raise

    def end(self) -> Reading:
        try:
            e1 = self.nvml.nvmlDeviceGetTotalEnergyConsumption(self.handle)
            duration = time.perf_counter() - self._t_begin
        finally:
            samples = self._stop()
        flags = list(self._run_flags)
        energy = (e1 - self._e0) / 1000.0
        if energy < 0:  # driver reloaded mid-window: fall back to the samples
            flags.append("counter-reset-sampled")
            energy = trapezoid_j(samples)
        if duration < 2 * NVML_COUNTER_RESOLUTION_S:
            flags.append("window-below-meter-resolution")
        return self._reading(energy, duration, samples, flags, self.max_w)


class NvmlSamplingMeter(_NvmlMeter):
    method = "nvml-power-sampling"
    estimated = False
    uncertainty_rel = UNCERTAINTY["nvml-power-sampling"]

    def begin(self) -> None:
        self._start()

    def end(self) -> Reading:
        samples = self._stop()
        flags = list(self._run_flags)
        if len(samples) < 2:
            flags.append("too-few-power-samples")
            return self._reading(0.0, samples[-1][0] if samples else 0.0, samples, flags, self.max_w)
        duration = samples[-1][0] - samples[0][0]
        return self._reading(trapezoid_j(samples), duration, samples, flags, self.max_w)


class GpuTdpEstimateMeter(Meter):
    """Last resort on CUDA when NVML is unreachable: wall time x a GPU TDP.

    options["gpu_tdp_w"] or env AUDIT_GPU_TDP_W, default 300 W, assumed fully
    drawn while the window runs. A crude upper-bound estimate, labelled so.
    """

    method = "estimate-tdp"
    estimated = True
    uncertainty_rel = UNCERTAINTY["estimate-gpu-tdp"]
    reads_idle = False

    def __init__(self, options: dict, reason: str, detail: str = ""):
        super().__init__()
        self.tdp_w = float(options.get("gpu_tdp_w") or os.environ.get("AUDIT_GPU_TDP_W") or GPU_DEFAULT_TDP_W)
        self.tdp_source = ("setting gpu_tdp_w" if options.get("gpu_tdp_w") or os.environ.get("AUDIT_GPU_TDP_W")
                           else f"default {GPU_DEFAULT_TDP_W:g} W (no GPU named: NVML unreachable)")
        self.flags = ["gpu-energy-estimated", reason]
        self.detail = detail

    def begin(self) -> None:
        self._t0 = time.perf_counter()

    def end(self) -> Reading:
        d = time.perf_counter() - self._t0
        reading = self._reading(d * self.tdp_w, d, [(0.0, self.tdp_w), (d, self.tdp_w)], [], GPU_MAX_PLAUSIBLE_W)
        reading.assumptions = {
            "model": "gpu_tdp_w x wall_s (the whole TDP drawn while the window runs)",
            "gpu_tdp_w": self.tdp_w,
            "gpu_tdp_source": self.tdp_source,
            "wall_s": d,
            "uncertainty_rel": self.uncertainty_rel,
        }
        return reading


def select_nvml_meter(device: str, options: dict) -> Meter:
    try:
        nvml = nvml_module()
        nvml.nvmlInit()
    except Exception as exc:  # noqa: BLE001 - ImportError, NVMLError, OSError...
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


# --------------------------------------------------------------------------- RAPL

_PACKAGE_DOMAIN = re.compile(r"^intel-rapl:\d+$")
_SUB_DOMAIN = re.compile(r"^intel-rapl:\d+:\d+$")


@dataclass
class RaplDomain:
    path: Path
    name: str
    max_range_uj: int

    def read_uj(self) -> int:
        return int((self.path / "energy_uj").read_text().strip())


def powercap_root(options: dict | None = None) -> Path:
    options = options or {}
    return Path(options.get("powercap_root") or os.environ.get("AUDIT_POWERCAP_ROOT") or "/sys/class/powercap")


def rapl_package_domains(root: Path) -> tuple[list[RaplDomain], bool]:
    """Readable package domains, and whether any domain existed at all.

    Only top-level ``intel-rapl:N`` zones named ``package-*``: their
    ``intel-rapl:N:M`` children (core, uncore, dram) are parts of or beside the
    package and adding them would double count; ``psys`` (platform) already
    includes the package; ``intel-rapl-mmio`` mirrors the package.
    Since Linux 5.10 ``energy_uj`` is root-only: unreadable means unusable.
    """
    domains, present = [], False
    try:
        entries = sorted(root.iterdir())
    except OSError:
        return [], False
    for zone in entries:
        if not _PACKAGE_DOMAIN.match(zone.name):
            continue
        try:
            name = (zone / "name").read_text().strip()
        except OSError:
            continue
        if not name.startswith("package"):
            continue
        present = True
        try:
            max_range = int((zone / "max_energy_range_uj").read_text().strip())
            domain = RaplDomain(zone, name, max_range)
            domain.read_uj()
        except (OSError, ValueError):
            continue
        domains.append(domain)
    return domains, present


def rapl_dram_domains(root: Path) -> list[RaplDomain]:
    """Readable DRAM sub-zones ``intel-rapl:N:M`` named ``dram`` (server parts have them;
    desktop parts and AMD usually do not). Reported beside the package, never added."""
    domains = []
    try:
        entries = sorted(root.iterdir())
    except OSError:
        return []
    for zone in entries:
        if not _SUB_DOMAIN.match(zone.name):
            continue
        try:
            if (zone / "name").read_text().strip() != "dram":
                continue
            domain = RaplDomain(zone, "dram", int((zone / "max_energy_range_uj").read_text().strip()))
            domain.read_uj()
        except (OSError, ValueError):
            continue
        domains.append(domain)
    return domains


def _is_amd_cpu() -> bool:
    return "AMD" in cpuinfo.cpu_model().upper()


class RaplMeter(Meter):
    method = "rapl"
    estimated = False

    def __init__(self, domains: list[RaplDomain], options: dict | None = None,
                 dram_domains: list[RaplDomain] | None = None):
        super().__init__()
        options = options or {}
        self.domains = domains
        self.dram_domains = list(dram_domains or [])
        self.uncertainty_rel = UNCERTAINTY["rapl-amd"] if _is_amd_cpu() else UNCERTAINTY["rapl"]
        poll = options.get("rapl_poll_s")
        self.poll_s = RAPL_POLL_S if poll is None else float(poll)
        self.max_w = CPU_MAX_PLAUSIBLE_W_PER_PACKAGE * len(domains)
        self._lock = threading.Lock()
        self._poller: _Poller | None = None

    @staticmethod
    def _deltas_uj(domains: list[RaplDomain], last: list[int]) -> int | None:
        """Sum of each domain's delta since ``last`` (updated in place), unwrapping the
        counter; None on a torn read (the next poll picks the delta up)."""
        values = []
        for domain in domains:
            try:
                values.append(domain.read_uj())
            except (OSError, ValueError):
                return None
        total = 0
        for i, (domain, value) in enumerate(zip(domains, values)):
            delta = value - last[i]
            if delta < 0:
                delta += domain.max_range_uj
            total += delta
            last[i] = value
        return total

    def _accumulate(self) -> None:
        """Add each domain's delta since the last read, unwrapping the counter.

        Polling often enough (100 ms) also catches a counter that would wrap
        more than once over a long window.
        """
        with self._lock:
            now = time.perf_counter()
            delta_uj = self._deltas_uj(self.domains, self._last)
            if delta_uj is None:
                return
            dram_uj = self._deltas_uj(self.dram_domains, self._last_dram)
            if dram_uj is not None:
                self._dram_uj += dram_uj
            dt = now - self._t_last
            self._energy_uj += delta_uj
            if dt > 0:
                self._trace.append((now - self._t0, delta_uj / 1e6 / dt))
            self._t_last = now

    def begin(self) -> None:
        self._last = [d.read_uj() for d in self.domains]
        self._last_dram = [d.read_uj() for d in self.dram_domains]
        self._t0 = self._t_last = time.perf_counter()
        self._energy_uj = 0
        self._dram_uj = 0
        self._trace = []
        if self.poll_s > 0:
            self._poller = _Poller(self.poll_s, self._accumulate)
            self._poller.start()

    def end(self) -> Reading:
        if self._poller is not None:
            self._poller.stop()
            self._poller = None
        self._accumulate()
        duration = self._t_last - self._t0
        energy = self._energy_uj / 1e6
        trace = self._trace if len(self._trace) > 1 else [(0.0, energy / duration if duration else 0.0)] + self._trace
        reading = self._reading(energy, duration, trace, [], self.max_w)
        reading.domains = {"package": energy}
        if self.dram_domains:
            reading.domains["dram"] = self._dram_uj / 1e6
        return reading

    def close(self) -> None:
        if self._poller is not None:
            self._poller.stop()
            self._poller = None


# --------------------------------------------------------------------------- estimate


def cpu_tdp_per_logical_cpu(options: dict) -> tuple[float, str, bool]:
    """(package TDP share per logical CPU in W, where that figure comes from, whether the
    CPU is known: given by a setting or found in KNOWN_CPU_TDP)."""
    given = options.get("cpu_tdp_w") or os.environ.get("AUDIT_CPU_TDP_W")
    if given:
        per_package = cpuinfo.logical_cpus_per_package()
        return (float(given) / per_package,
                f"setting cpu_tdp_w={float(given):g} W over {per_package} logical CPUs", True)
    model = cpuinfo.cpu_model()
    for key, (tdp, threads) in KNOWN_CPU_TDP.items():
        if key.lower() in model.lower():
            return tdp / threads, f"{key}: {tdp:g} W TDP over {threads} logical CPUs (vendor spec sheet)", True
    return (DEFAULT_W_PER_LOGICAL_CPU,
            f"unknown CPU {model!r}: median TDP per logical CPU of the {len(KNOWN_CPU_TDP)} known CPUs "
            f"({DEFAULT_W_PER_LOGICAL_CPU:.3g} W)", False)


def _resident_gb() -> float:
    """This process's resident memory now (/proc/self/statm), in GB (1e9 bytes, the unit of
    the W/GB figure); 0 where unreadable."""
    try:
        with open("/proc/self/statm", encoding="ascii") as fh:
            pages = int(fh.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 1e9
    except (OSError, ValueError, IndexError):
        return 0.0


def _machine_busy_cpu_s(stat_path: str = "/proc/stat") -> float | None:
    """CPU-seconds all processes of the machine have been busy since boot (None if unreadable)."""
    try:
        with open(stat_path, encoding="ascii") as fh:
            fields = [int(v) for v in fh.readline().split()[1:]]
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
        busy = sum(fields[:8]) - idle  # user..steal; guest is already inside user
        return busy / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def _threads(options: dict) -> int | None:
    """The intra-op threads the run asked for (options["threads"], else torch's, if imported)."""
    if options.get("threads"):
        return int(options["threads"])
    torch = sys.modules.get("torch")
    try:
        return int(torch.get_num_threads()) if torch is not None else None
    except Exception:  # noqa: BLE001
        return None


class TdpEstimateMeter(Meter):
    """CPU energy where no counter is readable: a model, every figure of which is recorded.

    Over a window of wall time ``t`` in which this process used ``c`` CPU-seconds
    (user + system, all its threads):

        package J = idle_w x t + c x w_per_core
        dram J    = memory_w x t         (reported beside, not added: see the DRAM rule)

    - ``w_per_core``: the dynamic share of one logical CPU, (1 - idle fraction) x
      package TDP / logical CPUs, the TDP from the setting ``cpu_tdp_w`` or the
      table of known CPUs (else the table's median);
    - ``idle_w``: the static share of all packages, idle fraction x TDP x packages
      (or the setting ``cpu_idle_w``), so the idle baseline measured with this
      meter is that share, not the near-zero CPU time of a sleeping process;
    - ``memory_w``: resident memory of this process at the window's end x W/GB.

    Only this process's CPU time is counted, so other processes do not inflate it;
    they are measured (``other_processes_cpus``, from /proc/stat) and flag the
    reading ``contended-cpu``. Busy-wait threads of this process (OpenMP spin-wait)
    do count: ``cores_used`` is compared with the threads asked for and a surplus is
    flagged ``cpu-time-above-threads``.
    """

    method = "estimate-tdp"
    estimated = True
    reads_idle = True  # the modelled idle share, not measured

    def __init__(self, options: dict | None = None, flags=()):
        super().__init__()
        options = options or {}
        self.options = options
        self.tdp_per_cpu, self.source, known = cpu_tdp_per_logical_cpu(options)
        self.uncertainty_rel = UNCERTAINTY["estimate-tdp"] if known else ESTIMATE_UNKNOWN_CPU_UNCERTAINTY
        self.w_per_cpu = self.tdp_per_cpu * (1.0 - IDLE_FRACTION_OF_TDP)
        self.packages = cpuinfo.cpu_packages()
        self.logical_cpus = os.cpu_count() or 1
        given_idle = options.get("cpu_idle_w") or os.environ.get("AUDIT_CPU_IDLE_W")
        if given_idle:
            self.idle_w = float(given_idle)
            self.idle_source = f"setting cpu_idle_w={self.idle_w:g} W"
        else:
            per_package = cpuinfo.logical_cpus_per_package()
            self.idle_w = IDLE_FRACTION_OF_TDP * self.tdp_per_cpu * per_package * self.packages
            self.idle_source = (f"{IDLE_FRACTION_SOURCE}, of {self.tdp_per_cpu * per_package:.4g} W TDP "
                                f"x {self.packages} package(s)")
        self.memory_w_per_gb = float(options.get("memory_w_per_gb") or MEMORY_W_PER_GB)
        self.memory_source = (f"setting memory_w_per_gb={self.memory_w_per_gb:g}"
                              if options.get("memory_w_per_gb") else MEMORY_W_SOURCE)
        self.flags = list(flags)
        self.max_w = (self.idle_w + self.w_per_cpu * self.logical_cpus) * 1.01 + 1e-9
        self.stat_path = options.get("proc_stat_path") or "/proc/stat"

    @property
    def description(self) -> str:
        return (f"estimate: idle {self.idle_w:.3g} W + process CPU time x {self.w_per_cpu:.3g} W per logical CPU "
                f"({self.source}); DRAM {self.memory_w_per_gb:g} W/GB resident, reported beside; "
                f"±{self.uncertainty_rel:.0%}")

    def begin(self) -> None:
        self._t0 = time.perf_counter()
        self._c0 = time.process_time()
        self._m0 = _machine_busy_cpu_s(self.stat_path)

    def assumptions_for(self, *, cpu_s: float, duration_s: float, memory_gb: float,
                        other_cpus: float | None) -> dict:
        threads = _threads(self.options)
        cores_used = cpu_s / duration_s if duration_s > 0 else 0.0
        return {
            "model": "idle_w x wall_s + cpu_s x w_per_core; dram = memory_w x wall_s (beside, not added)",
            "w_per_core": self.w_per_cpu,
            "w_per_core_source": f"{self.source}, less the idle share ({IDLE_FRACTION_OF_TDP:.0%})",
            "tdp_w_per_logical_cpu": self.tdp_per_cpu,
            "idle_w": self.idle_w,
            "idle_source": self.idle_source,
            "memory_w": memory_gb * self.memory_w_per_gb,
            "memory_w_per_gb": self.memory_w_per_gb,
            "memory_gb": memory_gb,
            "memory_source": self.memory_source,
            "cores_used": cores_used,
            "cpu_time_s": cpu_s,
            "wall_s": duration_s,
            "threads": threads,
            "cpu_time_over_wall_x_threads": (cpu_s / (duration_s * threads)) if threads and duration_s > 0 else None,
            "other_processes_cpus": other_cpus,
            "uncertainty_rel": self.uncertainty_rel,
            "uncertainty_source": ("50% for a CPU of the table or a given TDP" if self.uncertainty_rel
                                   == UNCERTAINTY["estimate-tdp"] else
                                   "largest relative distance of a known CPU's W per logical CPU from the "
                                   "table median"),
        }

    def end(self) -> Reading:
        cpu_s = time.process_time() - self._c0
        duration = time.perf_counter() - self._t0
        m1 = _machine_busy_cpu_s(self.stat_path)
        other = None
        if self._m0 is not None and m1 is not None and duration > 0:
            other = max(0.0, (m1 - self._m0 - cpu_s) / duration)
        memory_gb = _resident_gb()
        package = self.idle_w * duration + cpu_s * self.w_per_cpu
        assumptions = self.assumptions_for(cpu_s=cpu_s, duration_s=duration, memory_gb=memory_gb,
                                           other_cpus=other)
        flags = []
        ratio = assumptions["cpu_time_over_wall_x_threads"]
        if ratio is not None and ratio > CPU_TIME_OVER_THREADS_TOLERANCE:
            flags.append("cpu-time-above-threads")
        if other is not None and other > OTHER_PROCESSES_CONTENDED_CPUS:
            flags.append("contended-cpu")
        avg = package / duration if duration > 0 else 0.0
        reading = self._reading(package, duration, [(0.0, avg), (duration, avg)], flags, self.max_w)
        reading.assumptions = assumptions
        reading.domains = {"package": package, "dram": assumptions["memory_w"] * duration}
        return reading


# --------------------------------------------------------------------------- selection


def select_meter(device: str, options: dict) -> Meter:
    """The best meter available for ``device`` ("cpu", "cuda", "cuda:N").

    options: cpu_tdp_w, cpu_idle_w, memory_w_per_gb, threads, gpu_tdp_w, gpu_uuid, powercap_root, rapl_poll_s,
    nvml_sample_interval_s, and energy_method to force "estimate-tdp".
    """
    options = options or {}
    forced = options.get("energy_method")
    if device.startswith("cuda"):
        return select_nvml_meter(device, options)
    if forced == "estimate-tdp":
        return TdpEstimateMeter(options)
    root = powercap_root(options)
    domains, present = rapl_package_domains(root)
    if domains:
        return RaplMeter(domains, options, dram_domains=rapl_dram_domains(root))
    return TdpEstimateMeter(options, flags=["rapl-unreadable"] if present else [])
