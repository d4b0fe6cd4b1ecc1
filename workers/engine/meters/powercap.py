"""The host's CPU package and DRAM over a GPU audit's windows, from the powercap counters.

A GPU audit's device figure is the accelerator's counter; the host boundary (``boundary.py``)
adds the CPU packages and DRAM of the machine over the same windows. This meter reads them:
every top-level ``intel-rapl:N`` package zone and every ``dram`` sub-zone (AMD's zones appear
under the same ``intel-rapl`` names), each ``energy_uj`` difference unwrapped at the zone's
``max_energy_range_uj`` (the poller reads every 100 ms, so a counter that wraps more than once in
a long window is still counted), exactly as ``RaplMeter`` reads the package for a CPU audit.

Readable means: root, or the deployment made the ``energy_uj`` files readable to the worker's
user (since Linux 5.10 they are root-only, CVE-2020-8694), e.g. a udev rule or a systemd unit that
runs ``chmod o+r /sys/class/powercap/intel-rapl:*/energy_uj /sys/class/powercap/intel-rapl:*:*/energy_uj``
at boot (Zeus does the same with its privileged daemon, zeusd). ``AUDIT_POWERCAP_ROOT`` or
``options["powercap_root"]`` points the meter at another tree (the tests build one).
"""
from __future__ import annotations

from .base import Meter, Reading
from .cpu_estimate import TdpEstimateMeter
from .rapl import RaplMeter, powercap_root, rapl_dram_domains, rapl_package_domains

HOST_MAX_PLAUSIBLE_W = 5000.0


class PowercapHostMeter(RaplMeter):
    """Package + DRAM of the whole host; ``energy_j`` is their sum, ``domains`` each."""

    method = "rapl"

    def end(self) -> Reading:
        reading = super().end()
        package = reading.domains.get("package", reading.energy_j)
        dram = reading.domains.get("dram", 0.0)
        total = package + dram
        out = self._reading(total, reading.duration_s, reading.trace, [f for f in reading.flags
                                                                     if f not in ("zero-energy", "implausible-power")],
                            HOST_MAX_PLAUSIBLE_W)
        out.domains = dict(reading.domains)
        return out


def select_host_meter(options: dict | None = None) -> tuple[Meter, str]:
    """The meter of the host's CPU packages and DRAM and how it reads them: ``PowercapHostMeter``
    where a package zone is readable, else the CPU estimate (``TdpEstimateMeter``), labelled so."""
    options = options or {}
    root = powercap_root(options)
    domains, present = rapl_package_domains(root)
    if domains:
        return PowercapHostMeter(domains, options, dram_domains=rapl_dram_domains(root)), "rapl"
    why = "powercap-unreadable" if present else "powercap-absent"
    return TdpEstimateMeter(options, flags=[why]), why
