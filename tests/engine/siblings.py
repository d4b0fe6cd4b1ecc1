"""A test helper file beside the tests loaded as a module of its own (the fake NVML and amdsmi):
by path, so the same file serves the tests and a sandboxed child that imports it by path."""
import importlib.util
import sys
from pathlib import Path


def sibling(name: str):
    spec = importlib.util.spec_from_file_location(f"_audit_{name}", Path(__file__).with_name(f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module
