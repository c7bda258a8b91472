"""`forgeline`: start services, check their health, manage models.

Every option has a `FORGELINE_*` environment fallback (see `forgeline env`).
"""

from __future__ import annotations

import asyncio
import importlib
import sys
from importlib import metadata
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from forgeline.cli import demo, evaluate, jobs, models, quantize, serving, training, up
from forgeline.client import exceptions
from forgeline.client.refs import RefError
from forgeline.common.settings import ENVIRONMENT, ServiceName, Settings

console = Console()
err_console = Console(stderr=True, soft_wrap=True)  # messages stay whole lines

app = typer.Typer(
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


def _print_version(value: bool) -> None:
    """`--version`: prints the installed `forgeline` distribution's version and exits.

    Raises:
        typer.Exit: when asked for the version.
    """
    if not value:
        return
    try:
        console.print(f"forgeline {metadata.version('forgeline')}")
    except metadata.PackageNotFoundError:
        err_console.print("forgeline is not installed as a package (`make install`)")
        raise typer.Exit(1) from None
    raise typer.Exit()


@app.callback()
def forgeline(
    ctx: typer.Context,
    version: Annotated[
        bool | None,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Show the version and exit."
        ),
    ] = None,
) -> None:
    """Forgeline: fine-tune, quantize, evaluate, version and serve LLMs."""
    # A service names its own traces; a command's calls are children of one span.
    if ctx.invoked_subcommand != "serve" and _trace_as("cli"):
        from opentelemetry import context, trace

        from forgeline.common.tracing import tracer

        span = tracer.start_span(f"forgeline {ctx.invoked_subcommand}")
        context.attach(trace.set_span_in_context(span))
        ctx.call_on_close(span.end)


def _trace_as(name: str) -> bool:
    """Exports this process's traces as `forgeline-<name>` when OTEL_* asks for it.

    Returns:
        Whether traces are exported.

    Raises:
        typer.Exit: an OTEL_* variable is malformed.
    """
    from forgeline.common.tracing import configure_tracing

    try:
        return configure_tracing(name)
    except ValueError as err:
        err_console.print(f"[red]error:[/] {err}")
        raise typer.Exit(2) from None


app.add_typer(models.app, name="models")
serving.register(app)
training.register(app)
quantize.register(app)
app.add_typer(jobs.app, name="jobs")
app.add_typer(evaluate.app, name="eval")
up.register(app)
demo.register(app)


@app.command()
def serve(
    service: Annotated[ServiceName, typer.Argument(help="Which service to run.")],
    host: Annotated[str | None, typer.Option(help="Bind address [FORGELINE_HOST].")] = None,
    port: Annotated[int | None, typer.Option(help="Port; 0 picks one [FORGELINE_PORT].")] = None,
    home: Annotated[str | None, typer.Option(help="Data directory [FORGELINE_HOME].")] = None,
    insecure_no_keys: Annotated[
        bool,
        typer.Option(
            "--insecure-no-keys",
            help="gateway only: listen beyond loopback with no API keys, open to anyone who "
            "can reach it [FORGELINE_GATEWAY_INSECURE_NO_KEYS].",
        ),
    ] = False,
) -> None:
    """Run one service in the foreground until SIGTERM or Ctrl-C."""
    from forgeline.common.logs import configure_logging
    from forgeline.common.server import serve as run_server
    from forgeline.common.tracing import configure_tracing

    if insecure_no_keys and service is not ServiceName.GATEWAY:
        raise typer.BadParameter(
            "only `forgeline serve gateway` takes it", param_hint="--insecure-no-keys"
        )
    config = None
    try:  # every refused setting: one line naming it, exit 2, before anything binds
        settings = Settings.load(
            service,
            host=host,
            port=port,
            home=home,
            gateway_insecure_no_keys=insecure_no_keys or None,
        )
        configure_logging(settings.log_level, settings.log_format, service.value)
        configure_tracing(service.value)
        if service is ServiceName.GATEWAY:
            from forgeline.gateway.server import startup_config

            config = startup_config(settings)
        elif service is ServiceName.CONSOLE:
            from forgeline.console.config import ConsoleConfig

            config = ConsoleConfig.from_settings(settings)
    except ValueError as err:
        err_console.print(f"[red]error:[/] {err}")
        raise typer.Exit(2) from None
    if service is ServiceName.CONSOLE:
        from forgeline.console.server import run_console

        run_console(settings, config)
        return
    if config is not None:
        from forgeline.gateway.server import run_gateway

        run_gateway(settings, config)
        return
    module = importlib.import_module(f"forgeline.{service.value}.service")

    async def main() -> None:
        server, _ = module.create_server(settings)
        await run_server(server, settings)

    asyncio.run(main())


@app.command()
def health(
    address: Annotated[str, typer.Argument(help="host:port of a Forgeline service.")],
    service: Annotated[str, typer.Option(help="Service name to check; '' is the server.")] = "",
    timeout: Annotated[float, typer.Option(help="Seconds to wait for an answer.")] = 5.0,
    tls: Annotated[bool, typer.Option(help="Connect with TLS.")] = False,
) -> None:
    """Ask a service's grpc.health.v1 endpoint; exit 0 only when it is SERVING."""
    from forgeline.client.health import check_health

    ca_file = Settings.load(ServiceName.REGISTRY).tls.ca_file
    try:
        status = check_health(address, service, tls=tls, ca_file=ca_file, timeout=timeout)
    except exceptions.ForgelineError as exc:
        err_console.print(f"{address}: {exc.code.value}: {exc.message}")
        raise typer.Exit(1) from None
    console.print(f"{address}: {status}")
    if status != "SERVING":
        raise typer.Exit(1)


@app.command()
def env() -> None:
    """List every FORGELINE_* environment variable, its default and meaning."""
    table = Table("variable", "default", "meaning")
    for var in ENVIRONMENT:
        table.add_row(var.name, var.default, var.meaning)
    console.print(table)


def main() -> None:
    """Console-script entry point: domain errors print as one clear message, exit 1."""
    try:
        app()
    except exceptions.InvalidArgument as exc:
        err_console.print("[red]error:[/] invalid request")
        for violation in exc.violations:
            err_console.print(f"  {violation.field}: {violation.description}")
        sys.exit(1)
    except exceptions.ForgelineError as exc:
        err_console.print(f"[red]error:[/] {exc.message}")
        sys.exit(1)
    except RefError as exc:
        err_console.print(f"[red]error:[/] {exc}")
        sys.exit(1)
