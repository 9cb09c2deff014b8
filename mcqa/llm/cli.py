"""`mcqa serve` and `mcqa convert`: the model behind an OpenAI-compatible server, and a GGUF (or a
fine-tuned adapter on its base) as the safetensors folder vLLM loads. Heavy imports stay inside."""

from __future__ import annotations

import time
from pathlib import Path

import typer

from mcqa.cli_common import console, err, fail

ModelArg = typer.Option(
    None,
    "--model",
    "-m",
    help="Registry name, GGUF path or (vLLM) safetensors folder (default: the config's llm.model).",
)


def serve_cmd(
    model: str | None = ModelArg,
    engine: str = typer.Option("auto", "--engine", "-e", help="vllm, llamacpp, or auto: vLLM when it is installed."),
    port: int = typer.Option(8000, "--port", "-p", min=1, max=65535, help="Port on 127.0.0.1."),
    threads: int | None = typer.Option(
        None, "--threads", "-t", min=1, help="CPU threads (default: $MCQA_THREADS or all cores)."
    ),
    lora: Path | None = typer.Option(
        None, "--lora", help="Adapter served with the model (GGUF adapter for llama.cpp, peft folder for vLLM)."
    ),
    config: Path | None = typer.Option(
        None, "--config", help="A YAML config: its llm section sets the server (dtype, n_ctx, ...)."
    ),
    ready_timeout: float = typer.Option(
        900, "--ready-timeout", help="Seconds to wait for the server to load the model."
    ),
) -> None:
    """Serve a model on 127.0.0.1 with an OpenAI-compatible API; prints the base URL; Ctrl-C stops it.

    Point `llm.backend: openai` and `llm.base_url` at the printed URL to solve through it.
    """
    from mcqa.config import load_config
    from mcqa.llm.serve import ServeError, Server
    from mcqa.llm.vllm_engine import VLLMError
    from mcqa.models import ModelNotFound

    try:
        cfg = load_config(
            config, **{"llm.model": model, "llm.n_threads": threads, "llm.lora": str(lora) if lora else None}
        ).llm
        server = Server(cfg, engine=engine, port=port, ready_timeout=ready_timeout)
    except (ValueError, ServeError, VLLMError, ModelNotFound) as exc:
        fail(str(exc))
    from mcqa.extras import check

    # llama.cpp's server runs in a child process: a missing library would only show in its log
    check("serve" if server.engine == "llamacpp" else "openai", f"mcqa serve --engine {server.engine}")
    if _port_busy(port):
        fail(f"port {port} on 127.0.0.1 is in use: pass --port")
    err.print(f"starting {server.engine} server for {cfg.model} (log: {server.log_path}) ...", highlight=False)
    started = time.perf_counter()
    try:
        server.start()
        console.print(
            f"serving {cfg.model} at {server.base_url}  ({server.engine}, ready in "
            f"{time.perf_counter() - started:.0f}s; Ctrl-C stops it)",
            highlight=False,
        )
        console.print(
            f"use it with: llm: {{backend: openai, base_url: {server.base_url}, model: {cfg.model}}}", highlight=False
        )
        server.process.wait()
        fail(f"the server exited with code {server.process.returncode}:\n{server.tail()}")
    except ServeError as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        err.print("stopping the server ...")
    finally:
        server.stop()


def _port_busy(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def convert_cmd(
    model: str = typer.Argument(..., help="Registry name, GGUF path or transformers folder."),
    out: Path = typer.Argument(..., help="Folder to write (safetensors, config, tokenizer)."),
    adapter: Path | None = typer.Option(None, "--adapter", help="A peft LoRA adapter folder, merged into the weights."),
    dtype: str = typer.Option(
        "bfloat16", "--dtype", help="bfloat16 (default), float16 or float32 (closest to the GGUF's numbers on CPU)."
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace OUT if it exists."),
) -> None:
    """Write a model as the safetensors folder vLLM loads (vLLM reads no GGUF on CPU)."""
    from mcqa.llm.convert import ConvertError, convert
    from mcqa.models import ModelNotFound

    started = time.perf_counter()
    try:
        path = convert(model, out, adapter=adapter, dtype=dtype, overwrite=overwrite)
    except (ConvertError, ModelNotFound) as exc:
        fail(str(exc))
    console.print(
        f"wrote {path} in {time.perf_counter() - started:.0f}s; serve it with "
        f"`mcqa serve --model {path}` or set llm.backend: vllm, llm.model: {path}",
        highlight=False,
    )
