"""``rapl``: the CPU package (and DRAM beside it) from the powercap energy counters."""
from __future__ import annotations

import os
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from workers.engine import cpuinfo

from .base import UNCERTAINTY, Meter, Reading, _Poller

RAPL_POLL_S = 0.1  # options["rapl_poll_s"]; 0 disables the poller (no trace)
CPU_MAX_PLAUSIBLE_W_PER_PACKAGE = 1000.0

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
