"""The command line's ``--input NAME=DIMS[:DTYPE]`` overrides and the grammar they share with the
web form and the API (``workers.engine.inputs.parse_input_override``)."""

import json

import pytest

from tests.engine.test_onnx_robust import _dynamic_conv
from workers.engine.cli import main
from workers.engine.inputs import InputOverrideError, input_overrides_from, parse_input_override

FAST = ["--time-cap", "0.2", "--window", "0.05", "--idle", "0.05"]


def test_the_grammar():
    assert parse_input_override("pixel_values=3x224x224") == ("pixel_values", [3, 224, 224], None)
    assert parse_input_override(" x = 3,48,320 : FLOAT16 ") == ("x", [3, 48, 320], "float16")
    assert parse_input_override("input:0=10:long") == ("input:0", [10], "int64")  # TF-style ONNX names
    assert input_overrides_from("a=3 b=4x5:int64; c=7", {"seed": 1}) == {
        "seed": 1, "shape": {"a": [3], "b": [4, 5], "c": [7]}, "dtype": {"b": "int64"}}
    assert input_overrides_from(["a=3", "a=4"]) == {"shape": {"a": [4]}}  # the later one wins
    for bad, says in [("x", "NAME=DIMS"), ("=3", "NAME=DIMS"), ("x=3xa", "whole numbers"),
                      ("x=0x3", "at least 1"), ("x=3:complex", "unknown input dtype 'complex'")]:
        with pytest.raises(InputOverrideError, match=says):
            parse_input_override(bad)


def test_cli_input_sets_a_dynamic_onnx_shape(tmp_path, capsys):
    path = _dynamic_conv(tmp_path)
    out = tmp_path / "r.json"
    code = main(["profile", str(path), "--input", "x=3x32x48", "--batch-sizes", "2", "--quiet", "--json", str(out),
                 *FAST])
    assert code == 0
    doc = json.loads(out.read_text())
    (base,) = doc["variants"]
    assert base["measurements"][0]["input_shape"] == {"x": [2, 3, 32, 48]}
    assert base["flops"] == 2 * (4 * 32 * 48) * 3 * 9
    assert not any("assumed" in w for w in doc["warnings"])


def test_cli_refuses_a_malformed_input_before_loading_anything(tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        main(["profile", str(tmp_path / "missing.onnx"), "--input", "x=3xfoo"])
    assert stop.value.code == 2
    assert "whole numbers separated by 'x'" in capsys.readouterr().err


def test_cli_exits_3_naming_each_variant_when_none_succeeded(tmp_path, capsys):
    path = _dynamic_conv(tmp_path)
    out = tmp_path / "r.json"
    code = main(["profile", str(path), "--input", "image=3x8x8", "--recipes", "baseline,nope", "--quiet",
                 "--json", str(out), *FAST])
    captured = capsys.readouterr()
    assert code == 3
    (line,) = [x for x in captured.err.splitlines() if x.startswith("error:")]
    assert "no variant succeeded" in line
    assert "baseline failed: input override(s) for 'image': the model has no such input" in line
    assert "nope skipped: unknown recipe 'nope'" in line
    assert "baseline" in captured.out  # the table still shows what happened
    assert json.loads(out.read_text())["variants"][0]["status"] == "failed"  # and the document is written
