"""CPU facts from /proc/cpuinfo and /proc/meminfo, shared by the fingerprint and the
energy meters (it lives apart from both so that neither imports the other for them).
Nothing here imports torch or pynvml."""
from __future__ import annotations

import functools
import os
import platform


@functools.lru_cache(maxsize=1)
def _cpuinfo() -> list[dict[str, str]]:
    """/proc/cpuinfo as one dict per logical CPU (empty where there is none)."""
    try:
        text = open("/proc/cpuinfo", encoding="utf-8", errors="replace").read()  # noqa: SIM115
    except OSError:
        return []
    cpus = []
    for block in text.strip().split("\n\n"):
        entry = {}
        for line in block.splitlines():
            key, sep, value = line.partition(":")
            if sep:
                entry[key.strip()] = value.strip()
        if entry:
            cpus.append(entry)
    return cpus


def cpu_model() -> str:
    for cpu in _cpuinfo():
        for key in ("model name", "Hardware", "Processor", "cpu model"):
            if cpu.get(key):
                return cpu[key]
    return platform.processor() or platform.machine() or "unknown"


def physical_cores() -> int:
    """Distinct (physical id, core id) pairs; psutil's figure when cpuinfo lacks them."""
    pairs = {(c.get("physical id"), c.get("core id")) for c in _cpuinfo() if "core id" in c}
    if pairs:
        return len(pairs)
    try:
        import psutil  # noqa: PLC0415

        return psutil.cpu_count(logical=False) or os.cpu_count() or 1
    except ImportError:
        return os.cpu_count() or 1


def logical_cpus_per_package() -> int:
    """Logical CPUs in one package as the OS sees it ("siblings"); in a VM that is the vCPUs."""
    for cpu in _cpuinfo():
        if cpu.get("siblings", "").isdigit():
            return int(cpu["siblings"])
    return os.cpu_count() or 1


def ram_bytes() -> int:
    try:
        with open("/proc/meminfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        return 0


def cpu_packages() -> int:
    """Distinct physical packages (sockets); 1 where cpuinfo does not say."""
    ids = {c.get("physical id") for c in _cpuinfo() if c.get("physical id") is not None}
    return max(1, len(ids))
