"""`cotspec serve-teacher`: a local OpenAI-compatible teacher (llama.cpp's server) until Ctrl-C.

    cotspec serve-teacher --port 8000          # then, in another shell:
    cotspec sample --base-url http://127.0.0.1:8000/v1 ...
"""

from __future__ import annotations

import time
from typing import Annotated, Optional

import typer

from ..fieldhelp import field_docs
from ..teacher.server import EMBEDDED_PRESET, LlamaServerConfig, start_llama_server
from .main import app

_doc = field_docs(LlamaServerConfig)


@app.command("serve-teacher")
def serve_teacher_command(
    model: Annotated[str, typer.Option("--model", help=_doc["model"])] = EMBEDDED_PRESET,
    host: Annotated[str, typer.Option("--host", help=_doc["host"])] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help=_doc["port"])] = 8000,
    threads: Annotated[Optional[int], typer.Option("--threads", help=_doc["n_threads"])] = None,
    ctx: Annotated[int, typer.Option("--ctx", help=_doc["n_ctx"])] = 2048,
    startup_timeout: Annotated[
        float, typer.Option("--startup-timeout", help=_doc["startup_timeout_s"])
    ] = 120.0,
) -> None:
    """Serve a GGUF teacher over the OpenAI API with llama.cpp; prints the --base-url to use."""
    config = LlamaServerConfig(model, host, port, threads, ctx, startup_timeout)
    with start_llama_server(
        config.model,
        host=config.host,
        port=config.port,
        n_threads=config.n_threads,
        n_ctx=config.n_ctx,
        startup_timeout_s=config.startup_timeout_s,
    ) as server:
        typer.echo(f"serving {server.model_name} at {server.base_url} (log: {server.log_path})")
        typer.echo(f"pass --base-url {server.base_url}; Ctrl-C stops it", err=True)
        try:
            while server.running:
                time.sleep(0.5)
        except KeyboardInterrupt:
            typer.echo("stopping the teacher server", err=True)
            return
        server.check()
