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


# ------------------------------------------------------------------ identification (issue 23)

def cpuid(text: str | None = None) -> dict:
    """The first CPU's vendor, CPUID family / model / stepping, flags and model name, as
    /proc/cpuinfo reports them (``text``: a cpuinfo text to parse instead, for tests).
    ``hypervisor``: the flag a guest sees (a VM: the OS shows its vCPUs, not the package)."""
    cpus = _parse(text) if text is not None else _cpuinfo()
    cpu = cpus[0] if cpus else {}

    def _int(key):
        value = cpu.get(key, "")
        return int(value) if value.isdigit() else None

    flags = frozenset(cpu.get("flags", "").split())
    cores = _int("cpu cores")
    siblings = _int("siblings")
    return {
        "vendor": cpu.get("vendor_id", ""),
        "family": _int("cpu family"),
        "model": _int("model"),
        "stepping": _int("stepping"),
        "model_name": cpu.get("model name") or (cpu_model() if text is None else ""),
        "flags": flags,
        "hypervisor": "hypervisor" in flags,
        "cores_per_package": cores,
        "threads_per_core": (siblings // cores) if cores and siblings and siblings >= cores else None,
    }


def _parse(text: str) -> list[dict[str, str]]:
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


# CPUID (vendor, family, model range) -> the microarchitecture and the rows of the CPU specs
# table (data/cpu_specs.csv: ``series``, and a pattern on the product name) that it can be.
# Family/model numbers: the Linux kernel's arch/x86/include/asm/intel-family.h and AMD's
# "Processor Programming Reference" of each family; product series: the vendors' product pages.
# ``flag``: an instruction-set flag every part of that generation has; a guest may hide it, so
# its absence is recorded, not used to reject the match.
MICROARCHITECTURES = (
    {"vendor": "AuthenticAMD", "family": 23, "models": range(0x00, 0x10), "name": "Zen/Zen+ (Naples)",
     "series": "EPYC 7001 Series", "pattern": r"EPYC 7\d\d1", "flag": "avx2"},
    {"vendor": "AuthenticAMD", "family": 23, "models": range(0x30, 0x40), "name": "Zen 2 (Rome)",
     "series": "EPYC 7002 Series", "pattern": r"EPYC 7\d\d2", "flag": "avx2"},
    {"vendor": "AuthenticAMD", "family": 25, "models": range(0x00, 0x10), "name": "Zen 3 (Milan)",
     "series": "EPYC 7003 Series", "pattern": r"EPYC 7\d\d3", "flag": "vaes"},
    {"vendor": "AuthenticAMD", "family": 25, "models": range(0x10, 0x20), "name": "Zen 4 (Genoa)",
     "series": "EPYC 9004 Series", "pattern": r"EPYC 9[0-6]\d4", "flag": "avx512f"},
    {"vendor": "AuthenticAMD", "family": 25, "models": range(0xA0, 0xB0), "name": "Zen 4c (Bergamo, Siena)",
     "series": "EPYC 9004 Series|EPYC 8004 Series", "pattern": r"EPYC (97\d4|8\d\d4)", "flag": "avx512f"},
    {"vendor": "AuthenticAMD", "family": 26, "models": range(0x00, 0x20), "name": "Zen 5 (Turin)",
     "series": "EPYC 9005 Series", "pattern": r"EPYC 9\d\d5", "flag": "avx512f"},
    {"vendor": "GenuineIntel", "family": 6, "models": range(0x55, 0x56), "name": "Skylake-SP / Cascade Lake",
     "series": "Intel Xeon", "pattern": r"Xeon (Platinum|Gold|Silver|Bronze) \d[12]\d\d", "flag": "avx512f"},
    {"vendor": "GenuineIntel", "family": 6, "models": range(0x6A, 0x6D), "name": "Ice Lake-SP",
     "series": "Intel Xeon", "pattern": r"Xeon (Platinum|Gold|Silver) \d3\d\d", "flag": "avx512f"},
    {"vendor": "GenuineIntel", "family": 6, "models": range(0x8F, 0x90), "name": "Sapphire Rapids",
     "series": "Intel Xeon", "pattern": r"Xeon (Platinum|Gold|Silver|Bronze) \d4\d\d", "flag": "amx_tile"},
    {"vendor": "GenuineIntel", "family": 6, "models": range(0xCF, 0xD0), "name": "Emerald Rapids",
     "series": "Intel Xeon", "pattern": r"Xeon (Platinum|Gold|Silver|Bronze) \d5\d\d", "flag": "amx_tile"},
    {"vendor": "GenuineIntel", "family": 6, "models": range(0xAD, 0xAE), "name": "Granite Rapids",
     "series": "Intel Xeon", "pattern": r"Xeon 6\d\d\dP", "flag": "amx_tile"},
)

# Cloud instance families -> the microarchitecture their provider documents for them (AWS EC2
# instance types, Google Cloud machine families, Azure VM sizes pages). The deployment names its
# instance type (setting AUDIT_CLOUD_INSTANCE_TYPE / option cloud_instance_type), e.g. m7a.2xlarge,
# c3d-standard-8, Standard_D8as_v5.
CLOUD_INSTANCE_FAMILIES = {
    "m7a": "Zen 4 (Genoa)", "c7a": "Zen 4 (Genoa)", "r7a": "Zen 4 (Genoa)", "hpc7a": "Zen 4 (Genoa)",
    "m6a": "Zen 3 (Milan)", "c6a": "Zen 3 (Milan)", "r6a": "Zen 3 (Milan)", "hpc6a": "Zen 3 (Milan)",
    "c5a": "Zen 2 (Rome)",
    "m7i": "Sapphire Rapids", "c7i": "Sapphire Rapids", "r7i": "Sapphire Rapids",
    "m6i": "Ice Lake-SP", "c6i": "Ice Lake-SP", "r6i": "Ice Lake-SP",
    "c3d": "Zen 4 (Genoa)", "c3": "Sapphire Rapids", "n2d": "Zen 3 (Milan)", "c2d": "Zen 3 (Milan)",
    "c4": "Emerald Rapids",
    "asv6": "Zen 4 (Genoa)", "asv5": "Zen 3 (Milan)", "asv4": "Zen 2 (Rome)",
}


def microarchitecture(info: dict) -> dict | None:
    """The MICROARCHITECTURES entry the CPUID vendor/family/model falls in (None if none)."""
    for arch in MICROARCHITECTURES:
        if (info.get("vendor") == arch["vendor"] and info.get("family") == arch["family"]
                and info.get("model") is not None and info["model"] in arch["models"]):
            return arch
    return None


def instance_family(instance_type: str) -> str | None:
    """'m7a.2xlarge' -> 'm7a', 'c3d-standard-8' -> 'c3d', 'Standard_D8as_v5' -> 'asv5'."""
    text = (instance_type or "").strip().lower()
    if not text:
        return None
    if text.startswith("standard_"):  # Azure: Standard_<family letters><vCPUs><features>_v<N>
        import re  # noqa: PLC0415

        m = re.match(r"standard_[a-z]+\d+([a-z]*)_(v\d+)$", text)
        return (m.group(1)[-2:] + m.group(2)) if m else None
    return text.split(".")[0].split("-")[0]


def microarchitecture_of_instance(instance_type: str) -> dict | None:
    name = CLOUD_INSTANCE_FAMILIES.get(instance_family(instance_type) or "")
    return next((a for a in MICROARCHITECTURES if a["name"] == name), None)
