"""CPU ``estimate-tdp``: a documented model where no counter is readable (see TdpEstimateMeter)."""
from __future__ import annotations

import os
import sys
import time

from workers.engine import cpuinfo

from . import cpu_table
from .base import Meter, Reading

# Which CPU, its TDP and the load curve: cpu_table.py (CodeCarbon's tables, MIT; see
# workers/engine/data/README.md). The hand-entered table of 12 CPUs this module used to carry
# is gone.
IDLE_FRACTION_SOURCE = (
    "median over CodeCarbon's 5 RAPL load profiles of package power at 0% load over TDP "
    "(cpu_load_profiles.csv)"
)


def idle_fraction_of_tdp() -> float:
    """Package power at no load as a share of TDP, from the measured curve."""
    return cpu_table.curve(0.0)


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
    """(package TDP share per logical CPU in W, where that figure comes from, whether the CPU's
    row is known exactly: given by a setting or a row of the table)."""
    ident = cpu_table.identify(options)
    return ident["w_per_logical_cpu"], ident["why"], ident["how"] in ("setting", "table-row")


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

    Over a window of wall time ``t`` in which this process used ``c`` CPU-seconds (user +
    system, all its threads) on ``v`` logical CPUs the OS shows:

        u         = c / (t x v)                   this process's load of the CPUs it sees
        package J = t x v x w x curve(u)          (idle: t x v x w x curve(0))
        dram J    = memory_w x t                  (reported beside, not added: see the DRAM rule)

    - ``w``: the package TDP per logical CPU of the identified row (``cpu_table.identify``:
      the setting ``cpu_tdp_w``, a table row in the model name, the CPUID generation, the
      cloud instance type), so a VM is charged for its vCPUs' share of the package only;
    - ``curve``: package power over TDP against load, the median of CodeCarbon's RAPL load
      profiles (``cpu_table.load_curve``): idle about 11% of TDP, full load about 72%;
    - the setting ``cpu_idle_w`` replaces the idle share (t x v x w x curve(0));
    - ``memory_w``: resident memory of this process at the window's end x W/GB.

    Uncertainty: the interval [x / k1, x * k2] of ``cpu_table.estimate_bounds`` (the curve's
    error against the profiles, times the table's spread over the candidate rows when the
    model name names none); ``uncertainty_rel`` is the one standard uncertainty whose
    log-normal 95% interval has the same geometric width (``cpu_table.symmetric_rel``).

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
        self.identification = cpu_table.identify(options)
        ident = self.identification
        self.tdp_per_cpu = ident["w_per_logical_cpu"]
        self.source = ident["why"]
        self.k1, self.k2 = cpu_table.estimate_bounds(ident)
        self.uncertainty_rel = cpu_table.symmetric_rel(self.k1, self.k2)
        self.packages = cpuinfo.cpu_packages()
        self.logical_cpus = os.cpu_count() or 1
        self.idle_fraction = idle_fraction_of_tdp()
        self.full_w = self.tdp_per_cpu * self.logical_cpus  # TDP share of the CPUs the OS shows
        given_idle = options.get("cpu_idle_w") or os.environ.get("AUDIT_CPU_IDLE_W")
        if given_idle:
            self.idle_w = float(given_idle)
            self.idle_source = f"setting cpu_idle_w={self.idle_w:g} W"
        else:
            self.idle_w = self.idle_fraction * self.full_w
            self.idle_source = (f"{IDLE_FRACTION_SOURCE}: {self.idle_fraction:.1%} of {self.full_w:.4g} W "
                                f"({self.logical_cpus} logical CPUs x {self.tdp_per_cpu:.3g} W)")
        # the older name: the dynamic W of one fully busy logical CPU, curve(1) - curve(0) of its TDP share
        self.w_per_cpu = self.tdp_per_cpu * (cpu_table.curve(1.0) - self.idle_fraction)
        self.memory_w_per_gb = float(options.get("memory_w_per_gb") or MEMORY_W_PER_GB)
        self.memory_source = (f"setting memory_w_per_gb={self.memory_w_per_gb:g}"
                              if options.get("memory_w_per_gb") else MEMORY_W_SOURCE)
        self.flags = list(flags)
        self.max_w = max(self.idle_w, 0.0) + self.full_w * 1.01 + 1e-9
        self.stat_path = options.get("proc_stat_path") or "/proc/stat"

    @property
    def description(self) -> str:
        return (f"estimate: {self.logical_cpus} logical CPUs x {self.tdp_per_cpu:.3g} W TDP share x the load curve "
                f"(idle {self.idle_w:.3g} W) ({self.source}); DRAM {self.memory_w_per_gb:g} W/GB resident, "
                f"reported beside; x/{self.k1:.2f} to x{self.k2:.2f}")

    def package_w(self, load: float) -> float:
        """Modelled package power (W) of the CPUs the OS shows at this process's load (0-1)."""
        dynamic = self.full_w * (cpu_table.curve(load) - self.idle_fraction)
        return self.idle_w + dynamic

    def begin(self) -> None:
        self._t0 = time.perf_counter()
        self._c0 = time.process_time()
        self._m0 = _machine_busy_cpu_s(self.stat_path)

    def assumptions_for(self, *, cpu_s: float, duration_s: float, memory_gb: float,
                        other_cpus: float | None) -> dict:
        threads = _threads(self.options)
        cores_used = cpu_s / duration_s if duration_s > 0 else 0.0
        load = min(1.0, cores_used / self.logical_cpus)
        ident = self.identification
        return {
            "model": "wall_s x logical_cpus x tdp_w_per_logical_cpu x curve(load); load = cpu_s / (wall_s x "
                     "logical_cpus); dram = memory_w x wall_s (beside, not added)",
            "cpu_row": ident.get("row"),
            "cpu_identified_by": ident["how"],
            "cpu_identification": ident["why"],
            "cpu_microarchitecture": ident.get("microarchitecture"),
            "cpu_candidates": ident["candidates"],
            "cpu_row_tdp_w": ident["tdp_w"],
            "cpu_row_threads": ident["threads"],
            "cpu_table_source": ident["tdp_source"],
            "tdp_w_per_logical_cpu": self.tdp_per_cpu,
            "logical_cpus": self.logical_cpus,
            "load": load,
            "curve_at_load": cpu_table.curve(load),
            "curve_source": cpu_table.PROFILES_SOURCE,
            "w_per_core": self.w_per_cpu,
            "w_per_core_source": f"{self.source}; dynamic share curve(1) - curve(0) of the TDP share",
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
            "uncertainty_k1": self.k1,
            "uncertainty_k2": self.k2,
            "uncertainty_source": (
                f"interval [x/{self.k1:.2f}, x*{self.k2:.2f}]: the load curve's worst under- and overestimate "
                f"against CodeCarbon's RAPL profiles (x/{cpu_table.model_error()[0]:.2f}, "
                f"x{cpu_table.model_error()[1]:.2f})"
                + (f" times the spread of the {ident['candidates']} candidate rows' W per logical CPU around the "
                   f"median (x/{ident['k1_table']:.2f}, x{ident['k2_table']:.2f})" if ident["candidates"] > 1 else "")
                + "; uncertainty_rel is the one standard uncertainty u whose log-normal 95% interval "
                  "[x/(1+u)^1.96, x*(1+u)^1.96] is as wide (geometric mean of k1 and k2)"),
        }

    def end(self) -> Reading:
        cpu_s = time.process_time() - self._c0
        duration = time.perf_counter() - self._t0
        m1 = _machine_busy_cpu_s(self.stat_path)
        other = None
        if self._m0 is not None and m1 is not None and duration > 0:
            other = max(0.0, (m1 - self._m0 - cpu_s) / duration)
        memory_gb = _resident_gb()
        assumptions = self.assumptions_for(cpu_s=cpu_s, duration_s=duration, memory_gb=memory_gb,
                                           other_cpus=other)
        package = self.package_w(assumptions["load"]) * duration
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
