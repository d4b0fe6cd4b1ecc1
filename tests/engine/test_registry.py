"""The architecture registry: built-ins, a deployment's own, names from safetensors metadata."""

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.engine import models as m
from workers.engine.errors import LoadError
from workers.engine.registry import architecture_names, get_architecture, resolve_architecture


def test_builtins_listed_and_build():
    assert {"mlp", "small-cnn"} <= set(architecture_names())
    mlp = get_architecture("mlp")
    assert mlp.task == "classification"
    assert mlp.example_shape(m.MLP_CONFIG, 4) == (4, 16)
    cnn = get_architecture("small-cnn")
    assert cnn.example_shape(m.CNN_CONFIG, 2) == (2, 3, 16, 16)
    import torch

    out = cnn.build(m.CNN_CONFIG)(torch.randn(2, 3, 16, 16))
    assert out.shape == (2, 5)


def test_unknown_architecture_lists_known_ones():
    with pytest.raises(LoadError, match="unknown architecture 'resnet9000'.*mlp"):
        get_architecture("resnet9000")


def test_metadata_then_options_override():
    meta = {"architecture": "mlp", "architecture_config": '{"in_features": 8, "hidden": [4]}'}
    assert resolve_architecture(meta, {}) == ("mlp", {"in_features": 8, "hidden": [4]})
    name, config = resolve_architecture(meta, {"architecture_config": {"hidden": [2]}})
    assert (name, config) == ("mlp", {"in_features": 8, "hidden": [2]})
    # another architecture named in the request drops the metadata's config
    assert resolve_architecture(meta, {"architecture": "small-cnn"}) == ("small-cnn", {})
    with pytest.raises(LoadError, match="without an architecture"):
        resolve_architecture({}, {})


def test_deployment_module_from_environment(tmp_path, monkeypatch):
    (tmp_path / "team_arch.py").write_text(textwrap.dedent("""
        from workers.engine.registry import register

        @register("team-linear", input_shape=lambda c: (c["width"],), task="regression")
        def build(config):
            import torch
            return torch.nn.Linear(config["width"], 1)
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("AUDIT_ARCHITECTURE_MODULES", "team_arch")
    assert "team-linear" in architecture_names()
    arch = get_architecture("team-linear")
    assert arch.task == "regression"
    assert arch.example_shape({"width": 7}, 3) == (3, 7)


def test_bad_deployment_module_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("AUDIT_ARCHITECTURE_MODULES", "no_such_module_here")
    with pytest.raises(LoadError, match="no_such_module_here"):
        get_architecture("mlp")


def test_listing_names_imports_no_torch():
    code = ("import sys; from workers.engine.registry import architecture_names; "
            "print(architecture_names(), 'torch' in sys.modules)")
    repo = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=repo)
    assert out.stdout.strip() == "['mlp', 'small-cnn'] False"
