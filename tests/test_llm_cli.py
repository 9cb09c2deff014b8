"""`mcqa serve` and `mcqa convert`: bad input is one clear line (exit 2); serve's command lines."""

import os
import signal
import subprocess
import sys
import time

import httpx
import pytest
from typer.testing import CliRunner

from mcqa.cli import app
from mcqa.config import LLMConfig
from mcqa.llm.serve import free_port, server_command

runner = CliRunner()


def test_convert_rejects_a_bad_dtype_and_a_non_adapter(tmp_path):
    result = runner.invoke(app, ["convert", "smollm2-135m", str(tmp_path / "out"), "--dtype", "int3"])
    assert result.exit_code == 2 and "dtype 'int3' is not one of" in result.output
    result = runner.invoke(app, ["convert", "smollm2-135m", str(tmp_path / "out"), "--adapter", str(tmp_path)])
    assert result.exit_code == 2 and "peft adapter folder (no adapter_config.json)" in result.output


def test_serve_with_vllm_needs_a_converted_folder():
    result = runner.invoke(app, ["serve", "--engine", "vllm", "--model", "smollm2-135m"])
    assert result.exit_code == 2
    output = " ".join(result.output.split())  # rich wraps long lines
    assert "vLLM needs a safetensors folder" in output and "mcqa convert smollm2-135m" in output


def test_llamacpp_server_command_reads_logprobs_and_binds_localhost():
    argv, _ = server_command(LLMConfig(model="smollm2-135m", n_threads=1), "llamacpp", 8123)
    assert argv[1:3] == ["-m", "llama_cpp.server"]
    assert argv[argv.index("--host") + 1] == "127.0.0.1" and argv[argv.index("--logits_all") + 1] == "true"
    assert argv[argv.index("--model_alias") + 1] == "smollm2-135m"


def test_serve_prints_the_url_answers_and_stops_on_ctrl_c():
    """The real command in a subprocess: llama.cpp's server on 127.0.0.1, then SIGINT as Ctrl-C sends."""
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from mcqa.cli import main; main()",
            "serve",
            "--engine",
            "llamacpp",
            "--model",
            "smollm2-135m",
            "--port",
            str(port),
            "--threads",
            "1",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
        # As from a terminal: a suite started in the background (`cmd &`) inherits SIGINT
        # ignored, and the child would inherit that too and never see the Ctrl-C.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        lines = []
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            lines.append(line)
            if "serving smollm2-135m at" in line or not line:
                break
        assert f"http://127.0.0.1:{port}/v1" in "".join(lines), "".join(lines)
        models = httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=10).json()
        assert models["data"][0]["id"] == "smollm2-135m"
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0
        with pytest.raises(httpx.TransportError):
            httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=2)
    finally:
        if proc.poll() is None:
            proc.kill()
