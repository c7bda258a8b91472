"""`forgeline --help` lists exactly the commands there are."""

from __future__ import annotations

from typer.testing import CliRunner

from forgeline.cli.main import app

TOP_LEVEL = {
    "serve", "health", "env", "models", "demo",
    "sft", "pt", "dpo", "jobs", "merge", "quantize", "export", "eval",
    "deploy", "undeploy", "served", "generate", "chat", "api-key", "up", "status", "down",
}  # fmt: skip


def listed_commands(help_text: str) -> list[str]:
    """The command names of a help text's "Commands" panel, in the order shown."""
    lines = help_text.splitlines()
    start = next(i for i, line in enumerate(lines) if "─ Commands ─" in line)
    names = []
    for line in lines[start + 1 :]:
        if line.startswith("╰"):
            return names
        body = line.removeprefix("│")
        # A name starts right after the border; wrapped descriptions are indented.
        if body.startswith(" ") and body[1:2].strip():
            names.append(body.split()[0])
    raise AssertionError("the Commands panel is not closed:\n" + help_text)


def help_of(*args: str) -> str:
    result = CliRunner().invoke(app, [*args, "--help"], env={"COLUMNS": "100"})
    assert result.exit_code == 0, result.output
    return result.output


def test_help_lists_the_commands():
    names = listed_commands(help_of())
    assert len(names) == len(set(names)), names
    assert set(names) == TOP_LEVEL


def test_jobs_help_lists_its_subcommands():
    assert sorted(listed_commands(help_of("jobs"))) == ["cancel", "follow", "list", "logs", "show"]


def test_wrapped_descriptions_are_not_commands():
    panel = "╭─ Commands ───╮\n│ serve   Run a service     │\n│         and wait.  │\n╰──────╯\n"
    assert listed_commands(panel) == ["serve"]


def test_version_is_the_installed_distributions():
    from importlib import metadata

    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0, result.output
    assert result.output == f"forgeline {metadata.version('forgeline')}\n"
