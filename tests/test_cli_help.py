"""The CLI's help reads as prose: docstring paragraphs are reflowed (not broken where the
source wraps), no help text loses words to rich markup, and ``detect --help`` lists every
pipeline's parameters with their defaults."""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace

import pytest
import typer
from typer.testing import CliRunner

from synapse_pipelines import __version__
from synapse_pipelines.cli import app
from synapse_pipelines.cli.help_text import FLAG_METAVAR, reflow
from synapse_pipelines.core.channel_selection import select_channels
from synapse_pipelines.core.pipelines import available_pipelines, get_pipeline
from synapse_pipelines.io.volumes import volume_stem


def _help(*command: str, columns: int = 400) -> str:
    result = CliRunner().invoke(app, [*command, "--help"], env={"COLUMNS": str(columns)})
    assert result.exit_code == 0, result.output
    return result.output


def _commands() -> list[tuple[str, ...]]:
    root = typer.main.get_command(app)  # a group: its sub-apps are groups too
    found: list[tuple[str, ...]] = []
    for name, command in root.commands.items():  # type: ignore[attr-defined]
        found.append((name,))
        found.extend((name, sub) for sub in getattr(command, "commands", {}))
    return found


def test_reflow_joins_paragraph_lines_and_keeps_examples_and_items() -> None:
    text = """Title that
    wraps.

    A paragraph broken
    in the source.

    - an item
      continued
    - another

    Examples:

      synapse-pipelines detect a.tif b.tif
      synapse-pipelines detect c.npy
    """
    assert reflow(text) == (
        "Title that wraps.\n\nA paragraph broken in the source.\n\n"
        "- an item continued\n- another\n\nExamples:\n\n"
        "  synapse-pipelines detect a.tif b.tif\n  synapse-pipelines detect c.npy"
    )


@pytest.mark.parametrize("command", _commands(), ids=" ".join)
def test_help_keeps_every_word(command: tuple[str, ...]) -> None:
    """Square brackets in help are rich markup: "[default: x]" vanished and left "write ."
    behind. A wide terminal shows every line whole, so a word before a lone full stop, or
    a source line break inside a sentence, would show here."""
    shown = _help(*command)
    assert not re.search(r"\w \.(\s|$)", shown), shown


def test_detect_help_lists_every_pipelines_parameters() -> None:
    shown = _help("detect")
    assert "min_size" not in shown  # no parameter of that name exists
    for name in available_pipelines():
        assert f"Parameters of {name}" in shown
        for key, spec in get_pipeline(name).parameters.items():
            assert f"{key} = {spec.default:g}: " in shown
    assert "Parameters of paired-puncta (the default)" in shown
    # the docstring's paragraphs are one line each at this width
    assert "synapse_ids.ome.tif, synapses.csv and manifest.json into --out, the same" in shown


def _detect_examples() -> list[list[str]]:
    """The ``synapse-pipelines detect ...`` and ``boss load ...`` example lines of detect's
    help and docs/boss.md, as argument lists."""
    docs = Path(__file__).resolve().parents[1] / "docs" / "boss.md"
    lines = _help("detect").splitlines() + docs.read_text().splitlines()
    return [
        line.split("synapse-pipelines ", 1)[1].split()
        for line in lines
        if re.search(r"synapse-pipelines (detect|boss load) ", line)
    ]


def test_example_file_names_match_the_default_channels() -> None:
    """Pasted, an example with one file per channel and no channel options must find the
    synapsin and PSD channels by the files' names (``syn.tif psd.tif`` did not)."""
    checked = 0
    for args in _detect_examples():
        files = [a for a in args if a.endswith((".tif", ".npy")) and "=" not in a]
        if len(files) < 2 or any(a.endswith("-channel") for a in args):
            continue
        names = [volume_stem(Path(f)) for f in files]
        choice = SimpleNamespace(presynaptic_channel=None, postsynaptic_channel=None)
        select_channels(names, choice)  # raises ChannelSelectionError when nothing matches
        checked += 1
    assert checked >= 2  # detect's two-file examples and boss load's


@pytest.mark.parametrize("command", [(), *_commands()], ids=lambda c: " ".join(c) or "root")
def test_help_at_80_columns_shows_every_option_whole(command: tuple[str, ...]) -> None:
    """At 80 columns rich cut long names (``--presynaptic-chann…``): only the help column
    wraps. A flag's type column says ``flag``, never ``<bool>`` (``--keep-server true`` is
    an error, so the help must not suggest a value)."""
    shown = _help(*command, columns=80)
    root = typer.main.get_command(app)
    cmd = root
    for name in command:
        cmd = cmd.commands[name]  # type: ignore[attr-defined]
    names = {
        opt
        for param in cmd.params
        if not getattr(param, "hidden", False) and param.param_type_name == "option"
        for opt in (*param.opts, *param.secondary_opts)
        if opt.startswith("--")
    }
    assert not re.search(r"--[\w-]*…", shown), shown
    words = set(re.findall(r"--[\w-]+", shown))
    assert names <= words, names - words
    assert "<bool>" not in shown
    assert FLAG_METAVAR in shown  # --help at least


@pytest.mark.parametrize(
    ("command", "pair"),
    [
        ("demo", "--no-keep-server"),
        ("report", "--no-overwrite"),
        ("detect", "--no-overwrite"),
        ("synth", "--no-overwrite"),
        ("evaluate", "--no-overwrite"),
    ],
)
def test_on_off_flags_have_both_forms(command: str, pair: str) -> None:
    assert pair in _help(command, columns=80)


def test_keep_server_takes_no_value() -> None:
    result = CliRunner().invoke(app, ["demo", "--keep-server", "true"])
    assert result.exit_code == 2 and "unexpected extra argument" in result.output


@pytest.mark.parametrize("args", [["--version"], ["version"]])
def test_version_option_and_command(args: list[str]) -> None:
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0 and result.output.strip() == __version__
