"""Named boundaries on every energy figure: ``device``, ``host`` and ``facility``.

- ``device``: what the audit's device meter reads: the accelerator's counter on a GPU audit, the
  CPU package (RAPL, or the estimate) on a CPU audit. ``energy_j_per_inference`` is this figure,
  as before.
- ``host``: device + the audit's share of the host's CPU packages and DRAM over the same windows.

  Attribution rule (``HOST_SHARE_RULE``): on a GPU audit the host's package + DRAM energy of each
  window is shared equally among the accelerators of the machine, and the audit, which runs on
  one, takes 1 / N of it (N from NVML or amdsmi; the setting ``host_share`` replaces 1 / N, e.g.
  when other GPUs of the machine sit idle and the whole host should count). The same rule as a
  cloud provider's per-accelerator share of a machine, and it needs no knowledge of what the
  other accelerators run. On a CPU audit the device is the package, and the host adds DRAM.
  Where powercap cannot be read, the package and DRAM are the CPU estimate's
  (``TdpEstimateMeter``) and the host figure is labelled estimated.
- ``facility``: host x PUE, the PUE from the team's setting (or the site default); with no PUE
  set it is host x 1.0 and says so (``pue_known`` false).

Each reading of a ``BoundaryMeter`` carries ``boundaries``: joules of the window for device,
host, facility, host_cpu and host_dram (the last two already multiplied by the share).
"""
from __future__ import annotations

from .base import Meter, Reading

BOUNDARIES = ("device", "host", "facility")
HOST_SHARE_RULE = (
    "GPU audit: device + (host CPU packages + DRAM over the same windows) / accelerators in the host "
    "(or the setting host_share); CPU audit: package + DRAM"
)


def accelerator_count(meter: Meter) -> int | None:
    """Accelerators of the machine the device meter sees (NVML's or amdsmi's count)."""
    nvml = getattr(meter, "nvml", None)
    if nvml is not None:
        try:
            return int(nvml.nvmlDeviceGetCount())
        except Exception:  # noqa: BLE001 - a count we cannot read leaves the share at 1
            return None
    count = getattr(meter, "device_count", None)
    return count() if callable(count) else None


class BoundaryMeter:
    """A device meter, and the host's package + DRAM meter over the same windows.

    Everything the device meter has (method, estimated, uncertainty_rel, flags, handle, nvml...)
    is read through to it, so code that used the device meter keeps working; ``end()`` returns
    the device's reading with ``boundaries`` added."""

    def __init__(self, device: Meter, host: Meter | None, *, kind: str, options: dict | None = None,
                 host_how: str = ""):
        options = options or {}
        self.device = device
        self.host = host
        self.kind = kind
        self.host_how = host_how
        given = options.get("host_share")
        if kind == "cpu":
            self.share, self.share_source = 1.0, "CPU audit: the package is the device; DRAM added whole"
        elif given is not None:
            self.share, self.share_source = float(given), f"setting host_share={float(given):g}"
        else:
            n = accelerator_count(device) or 1
            self.share, self.share_source = 1.0 / n, f"1 / {n} accelerator(s) in the host"
        if not 0.0 <= self.share <= 1.0:
            raise ValueError(f"host_share must be within 0-1, got {self.share:g}")
        pue = options.get("pue")
        self.pue = float(pue) if pue is not None else 1.0
        if self.pue < 1.0:
            raise ValueError(f"a PUE is at least 1.0, got {self.pue:g}")
        self.pue_known = bool(options.get("pue_known", pue is not None and self.pue != 1.0))
        self.pue_source = str(options.get("pue_source") or ("setting pue" if self.pue_known else
                                                            "no PUE set: facility = host x 1.0"))

    def __getattr__(self, name):  # only for names this class does not have
        if name in ("device", "host"):
            raise AttributeError(name)
        return getattr(self.device, name)

    # ---------------------------------------------------------------- what each boundary is

    @property
    def host_method(self) -> str:
        if self.kind == "cpu":
            return self.device.method
        return f"{self.device.method} + {self.host.method if self.host is not None else 'none'}"

    @property
    def host_estimated(self) -> bool:
        if self.kind == "cpu":
            return bool(self.device.estimated)
        return bool(self.device.estimated or self.host is None or self.host.estimated)

    def describe(self) -> dict:
        """Method and basis of each boundary (no figures): goes into the measurement."""
        host_meter = self.device if self.kind == "cpu" else self.host
        return {
            "device": {"method": self.device.method, "estimated": bool(self.device.estimated)},
            "host": {"method": self.host_method, "estimated": self.host_estimated, "share": self.share,
                     "share_source": self.share_source, "rule": HOST_SHARE_RULE,
                     "host_reading": self.host_how or (host_meter.method if host_meter is not None else "none"),
                     "host_estimated": bool(host_meter is None or host_meter.estimated),
                     "host_uncertainty_rel": float(getattr(host_meter, "uncertainty_rel", 1.0) or 0.0)},
            "facility": {"method": f"host x PUE {self.pue:g}", "estimated": self.host_estimated,
                         "pue": self.pue, "pue_known": self.pue_known, "pue_source": self.pue_source},
        }

    # ---------------------------------------------------------------- the meter interface

    def begin(self) -> None:
        if self.host is not None:
            self.host.begin()
        self.device.begin()

    def end(self) -> Reading:
        try:
            reading = self.device.end()
        finally:
            host = self.host.end() if self.host is not None else None
        reading.boundaries = self.boundaries_of(reading, host)
        return reading

    def boundaries_of(self, reading: Reading, host: Reading | None) -> dict:
        if self.kind == "cpu":
            cpu = reading.energy_j
            dram = float((reading.domains or {}).get("dram", 0.0))
            device = reading.energy_j
            cpu_share = 0.0  # the package is the device already
        else:
            device = reading.energy_j
            domains = (host.domains or {}) if host is not None else {}
            cpu = float(domains.get("package", host.energy_j if host is not None else 0.0)) * self.share
            dram = float(domains.get("dram", 0.0)) * self.share
            cpu_share = cpu
        host_j = device + cpu_share + dram
        return {"device": device, "host": host_j, "facility": host_j * self.pue, "host_cpu": cpu,
                "host_dram": dram}

    def close(self) -> None:
        try:
            self.device.close()
        finally:
            if self.host is not None:
                self.host.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
