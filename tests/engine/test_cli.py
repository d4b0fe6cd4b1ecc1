"""The command line: progress on stderr, a table on stdout, the JSON document, clean errors."""

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.engine import models as m
from workers.engine.cli import main

REPO = Path(__file__).resolve().parents[2]
FAST = ["--time-cap", "0.2", "--window", "0.05", "--idle", "0.05"]


def test_profile_prints_table_and_writes_json(mlp_safetensors, tmp_path, capsys):
    out_json = tmp_path / "result.json"
    code = main(["profile", str(mlp_safetensors), "--batch-sizes", "1,4", "--threads", "1",
                 "--json", str(out_json), *FAST])
    captured = capsys.readouterr()
    assert code == 0
    lines = captured.out.splitlines()
    assert lines[0].split()[:4] == ["variant", "batch", "p50", "ms"]
    rows = [line.split() for line in lines[2:4]]
    assert [r[:2] for r in rows] == [["baseline", "1"], ["baseline", "4"]]
    assert "estimate-tdp" in captured.out or "rapl" in captured.out
    assert "\r[" in captured.err and "100.0% done" in captured.err
    doc = json.loads(out_json.read_text())
    assert doc["variants"][0]["flops"] == 2 * (16 * 32 + 32 * 16 + 16 * 4)
    assert [x["batch_size"] for x in doc["variants"][0]["measurements"]] == [1, 4]
    assert doc["fingerprint"]["threads"] == 1


def test_hf_folder_with_seq_len(bert_dir, capsys):
    assert main(["profile", str(bert_dir), "--seq-len", "8", "--quiet", *FAST]) == 0
    captured = capsys.readouterr()
    assert "baseline" in captured.out and captured.err == ""


def test_model_errors_are_one_line_and_exit_2(tmp_path):
    bad = m.save_pickled_module(tmp_path / "model.onnx")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUDIT_ALLOW")}
    proc = subprocess.run([sys.executable, "-m", "workers.engine", "profile", str(bad), *FAST],
                          capture_output=True, text=True, cwd=REPO, env=env, timeout=120)
    assert proc.returncode == 2
    err_lines = [line for line in proc.stderr.replace("\r", "\n").splitlines() if line.startswith("error:")]
    assert len(err_lines) == 1 and "pickled nn.Module is refused" in err_lines[0]
    assert "Traceback" not in proc.stderr
    assert proc.stdout == ""


def test_load_error_exit_2(tmp_path, capsys):
    weights = m.save_safetensors(tmp_path / "w.safetensors", "mlp", m.MLP_CONFIG, with_metadata=False)
    assert main(["profile", str(weights), *FAST]) == 2
    assert "without an architecture" in capsys.readouterr().err
    code = main(["profile", str(weights), "--architecture", "mlp", "--architecture-config",
                 json.dumps(m.MLP_CONFIG), "--quiet", *FAST])
    assert code == 0


def test_unknown_recipe_shows_in_table(mlp_safetensors, capsys):
    assert main(["profile", str(mlp_safetensors), "--recipes", "baseline,nope", "--quiet", *FAST]) == 0
    out = capsys.readouterr().out
    assert "nope: skipped: unknown recipe 'nope'" in out


def test_summary_table_labels_estimates_with_their_uncertainty():
    from workers.engine.cli import summary_table  # noqa: PLC0415

    def measurement(method, estimated, rel):
        return {"batch_size": 1, "latency_ms_p50": 1.0, "latency_ms_p95": 2.0, "energy_j_per_inference": 0.25,
                "energy_method": method, "energy_estimated": estimated, "energy_uncertainty_rel": rel}

    result = {"variants": [{"recipe": "baseline", "status": "succeeded", "error": None, "flops": 10, "params": 5,
                            "measurements": [measurement("estimate-tdp", True, 0.81),
                                             measurement("rapl", False, 0.05)]}]}
    rows = summary_table(result).splitlines()[2:4]
    assert "est. 0.25 ±81% (estimate-tdp)" in rows[0]
    assert "0.25 ±5% (rapl)" in rows[1] and "est." not in rows[1]


def test_every_audit_option_is_a_cli_flag_of_the_same_name():
    """audit/services/options.py is what a user may set on an audit (form and API); the engine's
    command line takes each under the same name, with the same choices, and passes it on."""
    from audit.services.options import OPTIONS
    from workers.engine.cli import _options, build_parser

    profile = build_parser()._subparsers._group_actions[0].choices["profile"]
    flags = {a.dest: a for a in profile._actions}
    for o in OPTIONS:
        flag = "--" + o.name.replace("_", "-")
        assert o.name in flags and flag in flags[o.name].option_strings, f"no CLI flag {flag} for option {o.name}"
        if o.choices:
            assert set(flags[o.name].choices) == set(o.choices)
    samples = {int: "4", float: "0.5", list: "1,4"}
    argv = ["profile", "model.onnx"]
    for o in OPTIONS:
        flag = "--" + o.name.replace("_", "-")
        if o.kind is bool:
            argv.append(flag)
        else:
            argv += [flag, o.choices[-1] if o.choices else samples[o.kind]]
    options = _options(build_parser().parse_args(argv))
    assert set(options) >= {o.name for o in OPTIONS}, {o.name for o in OPTIONS} - set(options)
    assert options["rounds"] == 4 and options["slo_ttft_ms_p95"] == 0.5 and options["min_fidelity"] == 0.5
    assert options["load_levels"] == [{"concurrency": 1}, {"concurrency": 4}, {"request_rate": 1.0},
                                      {"request_rate": 4.0}]


def test_profile_against_a_reference_prints_one_verdict_line_per_batch_size(mlp_safetensors, tmp_path, capsys):
    import re  # noqa: PLC0415

    out_json = tmp_path / "result.json"
    code = main(["profile", str(mlp_safetensors), "--reference", str(mlp_safetensors), "--reference-label", "v6",
                 "--batch-sizes", "1,4", "--threads", "1", "--quiet", "--json", str(out_json), *FAST])
    assert code == 0
    out = capsys.readouterr().out
    number, interval = r"\d+\.\d\d", r"\[\d+\.\d\d, \d+\.\d\d\]"
    verdicts = [re.match(rf"vs v6: energy x{number} {interval}, latency x{number} {interval}: "
                         r"(costs more|costs less|no measurable difference|inconclusive) \(batch (\d+)", line)
                for line in out.splitlines()]
    assert [int(v.group(2)) for v in verdicts if v] == [1, 4], out
    assert "vs v6: inputs: the same inputs for both" in out
    doc = json.loads(out_json.read_text())
    assert doc["reference"]["label"] == "v6" and doc["reference"]["status"] == "compared"
