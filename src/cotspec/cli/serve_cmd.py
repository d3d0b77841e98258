"""`cotspec serve-teacher`: a local OpenAI-compatible teacher (llama.cpp's server) until Ctrl-C.

    cotspec serve-teacher                      # port 8080; then, in another shell:
    cotspec sample --base-urls http://127.0.0.1:8080/v1 --model smollm2-135m-instruct ...

Its flags are the fields of `cotspec.teacher.server.LlamaServerConfig` (`cotspec.cli.options`).
"""

from __future__ import annotations

import time

import typer

from ..teacher.server import LlamaServerConfig, start_llama_server
from .app import app
from .options import config_command

# Old spellings, still accepted (hidden from --help).
ALIASES = {"n_threads": ["--threads"], "n_ctx": ["--ctx"], "startup_timeout_s": ["--startup-timeout"]}


@config_command(app, "serve-teacher", LlamaServerConfig, aliases=ALIASES)
def serve_teacher_command(config: LlamaServerConfig) -> None:
    """Serve a GGUF teacher over the OpenAI API with llama.cpp; prints the --base-urls to use."""
    with start_llama_server(
        config.model,
        host=config.host,
        port=config.port,
        n_threads=config.n_threads,
        n_ctx=config.n_ctx,
        startup_timeout_s=config.startup_timeout_s,
        engine=config.engine,
        parallel=config.parallel,
    ) as server:
        typer.echo(
            f"serving {server.model_name} at {server.base_url} with {server.engine}, {server.parallel} slot(s) "
            f"(log: {server.log_path})"
        )
        typer.echo(f"pass --base-urls {server.base_url} --model {server.model_name}; Ctrl-C stops it", err=True)
        try:
            while server.running:
                time.sleep(0.5)
        except KeyboardInterrupt:
            typer.echo("stopping the teacher server", err=True)
            return
        server.check()
