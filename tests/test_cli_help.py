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

from synapse_pipelines.cli import app
from synapse_pipelines.cli.help_text import reflow
from synapse_pipelines.core.pipelines import available_pipelines, get_pipeline
from synapse_pipelines.core.request import select_channels
from synapse_pipelines.io.volumes import volume_stem


def _help(*command: str) -> str:
    result = CliRunner().invoke(app, [*command, "--help"], env={"COLUMNS": "400"})
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
