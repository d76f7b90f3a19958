"""The ``synapse-pipelines`` command line.

Each concern registers its commands from its own module (``register(app)``), so this file
only composes them and turns user errors into a clean message and exit status 2.
"""

from __future__ import annotations

import sys

import typer
from rich.console import Console
from rich.markup import escape

from synapse_pipelines import __version__
from synapse_pipelines.core.errors import SynapsePipelinesError

from . import (
    aws_commands,
    block_commands,
    boss_commands,
    cost_commands,
    detect_commands,
    evaluate_commands,
    local_commands,
    report_commands,
    run_commands,
    step_commands,
    synth_commands,
    tune_commands,
    view_commands,
)
from .help_text import install_help_layout, reflow_commands

app = typer.Typer(
    name="synapse-pipelines",
    help="Find synapses in BOSS microscopy volumes: locally, or on AWS Step Functions + Batch.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(__version__)
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False,
        "--version",
        callback=_print_version,
        is_eager=True,
        help="Print the installed version and exit (as the `version` command does).",
    ),
) -> None:
    """Find synapses in BOSS microscopy volumes: locally, or on AWS Step Functions + Batch."""


for module in (
    detect_commands,
    tune_commands,
    evaluate_commands,
    synth_commands,
    report_commands,
    boss_commands,
    aws_commands,
    cost_commands,
    run_commands,
    local_commands,
    step_commands,
    block_commands,
    view_commands,
):
    module.register(app)


@app.command()
def version() -> None:
    """Print the installed version."""
    typer.echo(__version__)


reflow_commands(app)  # after every command is registered
install_help_layout()


#: soft_wrap: an error is one line whatever the terminal's width (a path is never cut in two)
err_console = Console(stderr=True, soft_wrap=True)

#: Top-level modules of the optional extras (pyproject.toml): the core install (the Batch
#: image) lacks them, so the commands that need them import them when they run.
EXTRA_OF_MODULE = {
    "moto": "local",
    "flask": "local",
    "waitress": "local",
    "neuroglancer": "local",
    "aws_lambda_powertools": "lambda",
    "aws_xray_sdk": "lambda",
    "aws_cdk": "infra",
}


def main() -> None:
    """Console-script entry point: user errors become one clean message and exit status 2."""
    try:
        app()
    except SynapsePipelinesError as exc:
        # the message is plain text (it may contain brackets): never parse it as markup
        err_console.print("[bold red]error:[/]", escape(str(exc)), highlight=False)
        sys.exit(2)
    except ModuleNotFoundError as exc:
        extra = EXTRA_OF_MODULE.get((exc.name or "").partition(".")[0])
        if extra is None:
            raise
        err_console.print(
            "[bold red]error:[/]",
            escape(
                f"this command needs the optional dependencies [{extra}] ({exc.name} is not "
                f"installed); install them with: pip install 'synapse-pipelines[{extra}]'"
            ),
            highlight=False,
        )
        sys.exit(2)
