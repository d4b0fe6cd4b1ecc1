"""CPU ``estimate-tdp``: a documented model where no counter is readable (see TdpEstimateMeter)."""
from __future__ import annotations

import os
import sys
import time

from workers.engine import cpuinfo

from .base import UNCERTAINTY, Meter, Reading

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
