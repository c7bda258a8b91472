"""`forgeline up | status | down`: the whole suite on one machine, on embedded defaults.

`up` starts one local Ray head shared by the trainer, quantizer and evaluator, then every
service as its own process and port (SQLite, the local blob store, vLLM, the gateway on
:8000, the web console on :8080 unless configured otherwise), waits until each answers and
prints a table of them.
It stays in the foreground restarting what crashes (and saying so) until Ctrl-C or SIGTERM,
then stops everything; `--detach` runs it in the background instead. Logs go to
`<home>/logs/<service>.log`. Settings come from the environment and a TOML file
(`--config` or FORGELINE_CONFIG; the environment wins): `forgeline env` lists them.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
import urllib.request
from pathlib import Path
from typing import Annotated

import psutil
import typer
from rich.table import Table

from forgeline.cli.context import console, err_console
from forgeline.common.config_file import read_config_file
from forgeline.common.processes import FORGELINE
from forgeline.common.settings import HTTP_SERVICES, home_dir
from forgeline.common.supervisor import RAY, Supervisor, metrics_setting, read_state

ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", help="TOML settings file [FORGELINE_CONFIG].", show_default=False),
]
HomeOption = Annotated[
    Path | None, typer.Option(help="Data directory [FORGELINE_HOME].", show_default=False)
]
DOWN_SECONDS = 180


def suite_environment(config: Path | None, home: Path | None) -> tuple[dict[str, str], Path]:
    """The services' environment (config file, then the environment, then `--home`) and
    their home.

    Raises:
        typer.Exit: the config file is unreadable or names an unknown setting.
    """
    path = config or os.environ.get("FORGELINE_CONFIG")
    try:
        env = {**(read_config_file(Path(path)) if path else {}), **os.environ}
    except ValueError as err:
        err_console.print(f"[red]error:[/] {err}")
        raise typer.Exit(2) from None
    if home is not None:
        env["FORGELINE_HOME"] = str(home)
    home = home_dir(env).resolve()
    env["FORGELINE_HOME"] = str(home)
    return env, home


def health(name: str, address: str, pid: int) -> str:
    """How a process of the suite answers now: SERVING, NOT_SERVING, or DOWN."""
    if not pid or not psutil.pid_exists(pid):
        return "DOWN"
    if name == RAY:
        return "SERVING"
    if name in HTTP_SERVICES:
        try:
            with urllib.request.urlopen(f"http://{address}/health", timeout=3) as reply:
                return "SERVING" if reply.status == 200 else "NOT_SERVING"
        except OSError:
            return "DOWN"
    from forgeline.client import exceptions
    from forgeline.client.health import check_health

    try:
        return check_health(address, timeout=3)
    except exceptions.ForgelineError:
        return "DOWN"


def state_table(state: dict, live: bool = True) -> tuple[Table, bool]:
    """The suite's processes as a table, and whether every one serves (asked live)."""
    table = Table("service", "address", "metrics", "pid", "state", "health", "restarts", "log")
    all_serving = True
    for p in state["processes"]:
        answer = health(p["name"], p["address"], p["pid"]) if live else ""
        all_serving &= answer == "SERVING"
        colour = "green" if answer == "SERVING" else "red"
        table.add_row(
            p["name"],
            p["address"],
            p.get("metrics", ""),
            str(p["pid"] or ""),
            p["state"],
            f"[{colour}]{answer}[/]" if answer else "",
            str(p["restarts"]),
            p["log"],
        )
    return table, all_serving


def _detach(env: dict[str, str], home: Path) -> None:
    """Runs `forgeline up` in a new session in the background; returns once all answer.

    Raises:
        typer.Exit: it stopped before the suite was up (its log's end is printed).
    """
    log = home / "logs" / "up.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [*FORGELINE, "up", "--home", str(home)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    err_console.print(f"starting in the background (pid {proc.pid}, log {log})")
    while True:
        state = read_state(home)
        if (
            state
            and state["pid"] == proc.pid
            and all(p["state"] == "running" for p in state["processes"])
        ):
            console.print(state_table(state)[0])
            return
        if proc.poll() is not None:
            err_console.print(f"[red]error:[/] the suite did not start:\n{log.read_text()[-3000:]}")
            raise typer.Exit(1)
        time.sleep(0.5)


def up(
    config: ConfigOption = None,
    home: HomeOption = None,
    detach: Annotated[
        bool, typer.Option("--detach", "-d", help="Run in the background; stop with `down`.")
    ] = False,
) -> None:
    """Start the whole suite here: Ray, registry, trainer, quantizer, evaluator, inference,
    gateway, console."""
    env, home = suite_environment(config, home)
    running = read_state(home)
    if running is not None:
        err_console.print(
            f"[red]error:[/] the suite of {home} is already up (pid {running['pid']}); "
            "see `forgeline status`, stop it with `forgeline down`"
        )
        raise typer.Exit(1)
    try:
        metrics_setting(env)
    except ValueError as err:
        err_console.print(f"[red]error:[/] {err}")
        raise typer.Exit(2) from None
    if detach:
        _detach(env, home)
        return
    signal.signal(signal.SIGTERM, _interrupt)
    supervisor = Supervisor(home, env, home / "logs", report=err_console.print)
    err_console.print(f"starting the suite of {home}")
    try:
        supervisor.start()
        console.print(state_table(supervisor.state())[0])
        err_console.print("up; Ctrl-C (or `forgeline down`) stops everything")
        supervisor.run(threading.Event())
    except RuntimeError as err:
        err_console.print(f"[red]error:[/] {err}")
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        err_console.print("stopping the suite")
    finally:
        supervisor.stop()
    err_console.print("stopped")


def _interrupt(*_) -> None:
    """SIGTERM stops `up` the way Ctrl-C does."""
    raise KeyboardInterrupt


def status(
    config: ConfigOption = None,
    home: HomeOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Show the suite's processes and ask each whether it serves; exit 1 unless all do."""
    _, home = suite_environment(config, home)
    state = read_state(home)
    if state is None:
        err_console.print(f"nothing is up for {home} (start it with `forgeline up`)")
        raise typer.Exit(1)
    table, all_serving = state_table(state)
    if as_json:
        for p in state["processes"]:
            p["health"] = health(p["name"], p["address"], p["pid"])
        console.print_json(json.dumps(state))
    else:
        console.print(f"suite of {home} (supervisor pid {state['pid']})")
        console.print(table)
    if not all_serving:
        raise typer.Exit(1)


def down(config: ConfigOption = None, home: HomeOption = None) -> None:
    """Stop the suite `forgeline up` started for this home."""
    _, home = suite_environment(config, home)
    state = read_state(home)
    if state is None:
        err_console.print(f"nothing is up for {home}")
        return
    pid = state["pid"]
    os.kill(pid, signal.SIGTERM)
    err_console.print(f"stopping the suite of {home} (pid {pid})")
    try:
        psutil.Process(pid).wait(DOWN_SECONDS)
    except psutil.NoSuchProcess:
        pass
    except psutil.TimeoutExpired:
        err_console.print(f"[red]error:[/] pid {pid} still runs after {DOWN_SECONDS} s")
        raise typer.Exit(1) from None
    err_console.print("stopped")


def register(app: typer.Typer) -> None:
    """Adds `up`, `status` and `down` to the CLI."""
    app.command()(up)
    app.command()(status)
    app.command()(down)
