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
  wrap-around at ``max_energy_range_uj``.
- ``estimate-tdp`` (CPU, nothing readable): process CPU time x per-logical-CPU
  share of a TDP. Always ``estimated=True``.

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
#   ignores frequency, vector width and memory traffic; 50%.
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

# Default when the CPU's TDP is unknown: 10 W per logical CPU. A server CPU
# spends roughly 3-12 W per core under load (e.g. a 280 W 64-core EPYC 7763 is
# 4.4 W/core, a 125 W 8-performance-core desktop part ~10+ W/core); 10 W leans
# high on purpose so an unknown machine is not made to look frugal.
DEFAULT_W_PER_LOGICAL_CPU = 10.0

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
        self.flags = ["gpu-energy-estimated", reason]
        self.detail = detail

    def begin(self) -> None:
        self._t0 = time.perf_counter()

    def end(self) -> Reading:
        d = time.perf_counter() - self._t0
        return self._reading(d * self.tdp_w, d, [(0.0, self.tdp_w), (d, self.tdp_w)], [], GPU_MAX_PLAUSIBLE_W)


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


def _is_amd_cpu() -> bool:
    from workers.engine.fingerprint import cpu_model  # noqa: PLC0415

    return "AMD" in cpu_model().upper()


class RaplMeter(Meter):
    method = "rapl"
    estimated = False

    def __init__(self, domains: list[RaplDomain], options: dict | None = None):
        super().__init__()
        options = options or {}
        self.domains = domains
        self.uncertainty_rel = UNCERTAINTY["rapl-amd"] if _is_amd_cpu() else UNCERTAINTY["rapl"]
        poll = options.get("rapl_poll_s")
        self.poll_s = RAPL_POLL_S if poll is None else float(poll)
        self.max_w = CPU_MAX_PLAUSIBLE_W_PER_PACKAGE * len(domains)
        self._lock = threading.Lock()
        self._poller: _Poller | None = None

    def _accumulate(self) -> None:
        """Add each domain's delta since the last read, unwrapping the counter.

        Polling often enough (100 ms) also catches a counter that would wrap
        more than once over a long window.
        """
        with self._lock:
            now = time.perf_counter()
            delta_uj = 0
            for i, domain in enumerate(self.domains):
                try:
                    value = domain.read_uj()
                except (OSError, ValueError):
                    return  # a torn read; the next poll picks the delta up
                last = self._last[i]
                delta = value - last
                if delta < 0:
                    delta += domain.max_range_uj
                delta_uj += delta
                self._last[i] = value
            dt = now - self._t_last
            self._energy_uj += delta_uj
            if dt > 0:
                self._trace.append((now - self._t0, delta_uj / 1e6 / dt))
            self._t_last = now

    def begin(self) -> None:
        self._last = [d.read_uj() for d in self.domains]
        self._t0 = self._t_last = time.perf_counter()
        self._energy_uj = 0
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
        return self._reading(energy, duration, trace, [], self.max_w)

    def close(self) -> None:
        if self._poller is not None:
            self._poller.stop()
            self._poller = None


# --------------------------------------------------------------------------- estimate


def cpu_tdp_per_logical_cpu(options: dict) -> tuple[float, str]:
    """(watts per logical CPU, where that figure comes from)."""
    from workers.engine.fingerprint import cpu_model, logical_cpus_per_package  # noqa: PLC0415

    given = options.get("cpu_tdp_w") or os.environ.get("AUDIT_CPU_TDP_W")
    if given:
        per_package = logical_cpus_per_package()
        return float(given) / per_package, f"cpu_tdp_w={float(given):g} W over {per_package} logical CPUs"
    model = cpu_model()
    for key, (tdp, threads) in KNOWN_CPU_TDP.items():
        if key.lower() in model.lower():
            return tdp / threads, f"{key}: {tdp:g} W TDP over {threads} logical CPUs"
    return DEFAULT_W_PER_LOGICAL_CPU, f"unknown CPU {model!r}: assumed {DEFAULT_W_PER_LOGICAL_CPU:g} W per logical CPU"


class TdpEstimateMeter(Meter):
    """Process CPU time (all threads, user + system) x one logical CPU's TDP share.

    Attributes only this process's work, so the idle power it reports is about
    0 W and total equals active energy. Ignores frequency scaling, SIMD width,
    memory and the rest of the machine: an estimate, always labelled so.
    """

    method = "estimate-tdp"
    estimated = True
    uncertainty_rel = UNCERTAINTY["estimate-tdp"]

    def __init__(self, options: dict | None = None, flags=()):
        super().__init__()
        self.w_per_cpu, self.source = cpu_tdp_per_logical_cpu(options or {})
        self.flags = list(flags)
        self.max_w = self.w_per_cpu * (os.cpu_count() or 1) * 1.01 + 1e-9

    def begin(self) -> None:
        self._t0 = time.perf_counter()
        self._c0 = time.process_time()

    def end(self) -> Reading:
        cpu_s = time.process_time() - self._c0
        duration = time.perf_counter() - self._t0
        energy = cpu_s * self.w_per_cpu
        avg = energy / duration if duration > 0 else 0.0
        return self._reading(energy, duration, [(0.0, avg), (duration, avg)], [], self.max_w)


# --------------------------------------------------------------------------- selection


def select_meter(device: str, options: dict) -> Meter:
    """The best meter available for ``device`` ("cpu", "cuda", "cuda:N").

    options: cpu_tdp_w, gpu_tdp_w, gpu_uuid, powercap_root, rapl_poll_s,
    nvml_sample_interval_s, and energy_method to force "estimate-tdp".
    """
    options = options or {}
    forced = options.get("energy_method")
    if device.startswith("cuda"):
        return select_nvml_meter(device, options)
    if forced == "estimate-tdp":
        return TdpEstimateMeter(options)
    domains, present = rapl_package_domains(powercap_root(options))
    if domains:
        return RaplMeter(domains, options)
    return TdpEstimateMeter(options, flags=["rapl-unreadable"] if present else [])
