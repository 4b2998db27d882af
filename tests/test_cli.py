"""The dualjac command: exit codes and output."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")
from dualjac.cli import main  # noqa: E402

MODELS = str(Path(__file__).parent / "data" / "cli_models.py")


def test_check_passes_on_a_correct_model(capsys):
    assert main(["check", f"{MODELS}:good", "--input-shape", "3,6", "--batched"]) == 0
    assert "OK" in capsys.readouterr().out


def test_check_params_and_dtype(capsys):
    assert main(["check", f"{MODELS}:good", "--input-shape", "3,6", "--wrt", "params", "--dtype", "float64"]) == 0
    assert "0.weight" in capsys.readouterr().out


def test_check_exits_1_on_a_mismatch(capsys):
    assert main(["check", f"{MODELS}:wrong", "--input-shape", "4,3", "--batched"]) == 1
    assert "MISMATCH" in capsys.readouterr().out


def test_check_several_inputs_with_token_ids(capsys):
    argv = ["check", f"{MODELS}:tokens", "--input-shape", "3,5", "--input-shape", "3,5,4", "--dtype", "float64"]
    assert main([*argv, "--input-dtype", "int64", "--input-dtype", "float64", "--int-high", "10"]) == 0
    out = capsys.readouterr().out
    assert "OK" in out and "not differentiated (not floating point): x0" in out
    assert main([*argv, "--input-dtype", "int64", "--input-dtype", "float64", "--wrt", "params"]) == 0


def test_check_prints_the_failing_node_and_exits_1(capsys):
    assert main(["check", f"{MODELS}:wrong_layer", "--input-shape", "4,6", "--mode", "projection"]) == 1
    out = capsys.readouterr().out
    assert "MISMATCH" in out and "first failing node: module '1' (OffLayer)" in out
    assert "cli_models.py" in out  # the line of the forward that is wrong


def test_check_without_power_exits_1(capsys):
    assert main(["check", f"{MODELS}:good", "--input-shape", "3,6", "--atol", "0.5"]) == 1
    assert "NO POWER" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["check", f"{MODELS}:nope", "--input-shape", "2,6"], "no attribute"),
        (["check", f"{MODELS}:not_a_module", "--input-shape", "2,6"], "not a torch.nn.Module"),
        (["check", "no_colon", "--input-shape", "2,6"], "MODULE:FACTORY"),
        (["check", f"{MODELS}:good", "--input-shape", "2,x"], "input-shape"),
        (["check", "missing_file.py:f", "--input-shape", "2"], "no such file"),
        (["check", f"{MODELS}:good", "--input-shape", "3,6", "--batched", "--wrt", "params"], "batched=True"),
        (["check", f"{MODELS}:tokens", "--input-shape", "3,5", "--input-shape", "3,5,4",
          "--input-dtype", "int64", "--input-dtype", "float64", "--input-dtype", "int64"], "one dtype per input"),
        (["check", f"{MODELS}:good", "--input-shape", "3,6", "--rtol", "2"], "rtol"),
        (["check", f"{MODELS}:good", "--input-shape", "3,7"], "torch.export"),  # the model cannot run on it
    ],
)
def test_check_usage_errors_exit_2_with_a_message(argv, message, capsys):
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_chunked_check_shows_progress(capsys):
    assert main(["check", f"{MODELS}:good", "--input-shape", "3,6", "--batched", "--chunk-size", "2"]) == 0
    assert "lanes [" in capsys.readouterr().err


def test_demo_runs_and_plots(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    out = tmp_path / "j.png"
    assert main(["demo", "--batch", "8", "--repeats", "1", "--plot", str(out)]) == 0
    captured = capsys.readouterr()
    assert "all Jacobians agree" in captured.out and out.stat().st_size > 1000
    assert "checking against torch.autograd" in captured.err  # progress while it works


def test_python_dash_m_entry_point():
    r = subprocess.run([sys.executable, "-m", "dualjac", "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "demo" in r.stdout and "check" in r.stdout
