"""`forgeline demo`: the production line on this machine, from the stock model to a gated
release answering through the OpenAI API.

1. `up` (or the suite already up for the home); import the bundled SmolLM2 as
   `atlas-assistant:1` (the first release) and the data: 24 invented facts as training
   questions, and their paraphrases as the domain-QA test; evaluate the stock model
   (domain QA and the MMLU subset);
2. fine-tune a LoRA adapter on the facts, on Ray;
3. evaluate the adapter: domain QA jumps on the paraphrases; MMLU holds;
4. merge and quantize it (GPTQ W4) as `atlas-assistant`'s next version; evaluate that;
5. serve `atlas-assistant@production` following the alias, promote the quantized version
   through the eval gate (the service rolls over to it), ask through the OpenAI SDK against
   the gateway, and show the gate refusing the stock model back;
6. print a summary and write a report folder.

Everything lives in the home (FORGELINE_HOME by default), so a second run reuses the
versions, jobs and evaluations the first one made.
"""

from __future__ import annotations

import os
import threading
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Annotated

import typer

from forgeline.cli.context import client_options, console, err_console
from forgeline.cli.demo.line import FULL, QUICK, Line, LineFailed, StepRecord
from forgeline.cli.demo.release import release
from forgeline.cli.demo.report import print_summary, summary, write_report
from forgeline.common.settings import ServiceName, home_dir
from forgeline.common.supervisor import Supervisor, read_state


def _suite(stack: ExitStack, home: Path) -> tuple[dict[str, str], bool]:
    """The addresses of the suite of `home`: the one already up (and True), else one
    started here on free ports, stopped at the end (and False)."""
    state = read_state(home)
    if state is None:
        env = {**os.environ, "FORGELINE_HOME": str(home), "FORGELINE_RAY_ADDRESS": ""}
        env |= {f"FORGELINE_{s.name}_ADDRESS": "127.0.0.1:0" for s in ServiceName}
        supervisor = Supervisor(home, env, home / "logs", report=console.print)
        console.print(f"starting the suite (home {home}, logs {home / 'logs'})")
        supervisor.start()
        stop = threading.Event()
        watcher = threading.Thread(target=supervisor.run, args=(stop,), daemon=True)
        watcher.start()
        stack.callback(supervisor.stop)
        stack.callback(stop.set)
        return {c.name: c.address for c in supervisor.children.values()}, False
    console.print(f"using the suite already up for {home} (pid {state['pid']})")
    return {p["name"]: p["address"] for p in state["processes"]}, True


def demo(
    home: Annotated[
        Path | None, typer.Option(help="Data directory [FORGELINE_HOME].", show_default=False)
    ] = None,
    report: Annotated[
        Path | None, typer.Option(help="Report folder; default <home>/demo-report.")
    ] = None,
    quick: Annotated[
        bool, typer.Option(help="A shorter run: 4 MMLU questions per subject, not 30.")
    ] = False,
    questions: Annotated[int, typer.Option(help="Paraphrases asked through the API.")] = 8,
) -> None:
    """Run the production line: import, evaluate, fine-tune, quantize, gate, serve, ask."""
    home = (home or home_dir()).resolve()
    report = report or home / "demo-report"
    recipe = QUICK if quick else FULL
    with ExitStack() as stack:
        console.rule("[bold]Forgeline demo: the production line")
        began = time.monotonic()
        try:
            addresses, attached = _suite(stack, home)
            line = Line(addresses, client_options(), recipe, home / "demo")
            stack.callback(line.close)
            line.steps.append(StepRecord("up", time.monotonic() - began, reused=attached))
            line.workdir.mkdir(parents=True, exist_ok=True)
            _run(line, report, questions)
        except (LineFailed, RuntimeError) as err:
            err_console.print(f"[red]error:[/] {err}")
            raise typer.Exit(1) from None


def _run(line: Line, report: Path, questions: int) -> None:
    with line.step("import the stock model and the data; evaluate it") as step:
        base, train_data, test_data = line.import_base()
        _, step.reused = line.evaluate(base, test_data)
    with line.step("fine-tune a LoRA adapter on Ray") as step:
        adapter, _, step.reused = line.fine_tune(base, train_data)
    with line.step("evaluate the adapter") as step:
        _, step.reused = line.evaluate(adapter, test_data)
    with line.step("merge and quantize (GPTQ W4); evaluate it") as step:
        quantized, step.reused = line.quantize(adapter, train_data)
        line.evaluate(quantized, test_data)
    with line.step("release through the gate; serve following the alias; ask via OpenAI"):
        released = release(line, base, quantized, line.addresses[ServiceName.GATEWAY], questions)
    numbers = summary(line, base, adapter, quantized, released)
    write_report(report, line, adapter, numbers)
    print_summary(line, numbers)
    console.print(f"report: {report}")


def register(app: typer.Typer) -> None:
    """Adds `forgeline demo` to the CLI."""
    app.command()(demo)
