"""``synapse-pipelines report``: the PyMEDA-style HTML report of a synapse table.

Parses options, calls :func:`synapse_pipelines.report.build_report` (the same function the
pipeline's report step calls) and prints what it wrote.
"""

from __future__ import annotations

from pathlib import Path

import typer

from synapse_pipelines.cli.results_manifest import manifest_beside, recorded_warnings
from synapse_pipelines.core.artefacts import CLUSTERING, REPORT
from synapse_pipelines.core.errors import SynapsePipelinesError
from synapse_pipelines.core.request import parse_request
from synapse_pipelines.io.staging import check_creatable


def _split_features(text: str | None) -> list[str] | None:
    if text is None:
        return None
    return [f.strip() for f in text.split(",") if f.strip()]


def default_clustering_path(out: Path) -> Path:
    """``clustering.json`` beside ``report.html`` (the results folder's names), else
    ``<stem>.clustering.json`` so two reports in one folder do not share a JSON file."""
    return out.parent / (CLUSTERING if out.name == REPORT else f"{out.stem}.clustering.json")


def report(
    table: Path = typer.Argument(..., help="synapses.csv written by the detect step."),
    out: Path = typer.Option(Path("report.html"), "--out", "-o", help="HTML file to write."),
    clustering_json: Path | None = typer.Option(
        None,
        "--clustering-json",
        help="Clustering JSON to write (default: next to --out: clustering.json for "
        "report.html, else <name>.clustering.json).",
    ),
    title: str | None = typer.Option(
        None,
        "--title",
        help="Report title (default: the --request's results key, else the input files or "
        "experiment and the pipeline from the manifest beside TABLE, else the file name).",
    ),
    seed: int = typer.Option(0, "--seed", min=0, help="Seed of every random choice."),
    gmm_levels: int = typer.Option(
        2, "--gmm-levels", min=0, max=8, help="Splitting rounds of the hierarchical GMM."
    ),
    voxel_size: str | None = typer.Option(
        None,
        "--voxel-size",
        help="Voxel size z,y,x in --voxel-unit (default: the table's metadata JSON).",
    ),
    voxel_unit: str | None = typer.Option(
        None, "--voxel-unit", help="Unit of --voxel-size (default: metadata, else nanometers)."
    ),
    features: str | None = typer.Option(
        None,
        "--features",
        help="Comma-separated feature columns (default: every *_window_zsum then *_mean).",
    ),
    request: Path | None = typer.Option(
        None,
        "--request",
        help="Request JSON: shown in the header (without secrets) with its results key, and "
        "its z/y/x ranges give the analysed box for the density.",
    ),
    overwrite: bool = typer.Option(
        False,
        "--overwrite/--no-overwrite",
        help="Replace the report and clustering JSON if they exist.",
    ),
    force: bool = typer.Option(
        False, "--force", hidden=True, help="Deprecated alias of --overwrite."
    ),
) -> None:
    """Build the PyMEDA-style interactive report (one offline HTML file) and clustering JSON."""
    # start-up time: the report stack (plotly, scikit-learn) loads only when one is built
    from synapse_pipelines.report import ResultVolumes, build_report

    json_path = clustering_json if clustering_json is not None else default_clustering_path(out)
    if force:
        typer.echo("note: --force is deprecated; use --overwrite", err=True)
    for path, option in ((out, "--out"), (json_path, "--clustering-json")):
        check_creatable(path, option=option, folder=False)  # before the table is read
    if not (overwrite or force):
        for path, option in ((out, "--out"), (json_path, "--clustering-json")):
            if path.exists():
                raise SynapsePipelinesError(
                    f"{path} already exists",
                    field=option,
                    hint="choose another path, or pass --overwrite to replace it",
                )
    request_info = None
    results_key = None
    if request is not None:
        req = parse_request(request, max_voxels=None)
        request_info = req.public_dict()
        results_key = req.results_key
    summary = build_report(
        table,
        title=title or results_key or default_title(table),
        out_html=out,
        out_clustering_json=json_path,
        seed=seed,
        gmm_levels=gmm_levels,
        features=_split_features(features),
        voxel_size=voxel_size,
        voxel_unit=voxel_unit,
        request_info=request_info,
        results_key=results_key,
        explanation=_recorded_explanation(table),
        warnings=recorded_warnings(manifest_beside(table)),
        # the synaptograms and overlay, when the table sits in a results folder with volumes
        volumes=ResultVolumes.from_folder(table.parent),
    )
    typer.echo(
        f"report: {summary.out_html} ({summary.html_bytes / 1e6:.1f} MB), "
        f"clustering: {summary.out_clustering_json}; {summary.n_synapses} synapses, "
        f"{summary.n_clusters} clusters, {len(summary.plots)} plots drawn, "
        f"{len(summary.missing)} not drawn, {summary.synaptograms} synaptograms, "
        f"{summary.overlays} overlay sections, {summary.seconds:.1f} s"
    )
    for key, why in summary.missing.items():
        typer.echo(f"  not drawn: {key}: {why}")


def _recorded_explanation(table: Path) -> str | None:
    """The detector's reason for an empty result, from the manifest beside the table."""
    explanation = manifest_beside(table).get("explanation")
    return explanation if isinstance(explanation, str) else None


#: At most this many input files are named in a default title; the rest are counted.
TITLE_FILES = 3


def default_title(table: Path) -> str:
    """The input and the pipeline, from the manifest beside the table ("Synapses in
    channels.ome.tif (paired-puncta)", "Synapses in collman/collman15v2 (paired-puncta)");
    the table's file name when there is no manifest."""
    manifest = manifest_beside(table)
    request = manifest.get("request") or {}
    pipeline = (manifest.get("pipeline") or {}).get("name")
    where = None
    if isinstance(request.get("inputs"), dict) and request["inputs"]:
        # local inputs: channel -> "path" or "path[index]" of a multi-channel file
        files = list(
            dict.fromkeys(Path(str(p).split("[")[0]).name for p in request["inputs"].values())
        )
        shown = ", ".join(files[:TITLE_FILES])
        more = len(files) - TITLE_FILES
        where = f"{shown} and {more} more file(s)" if more > 0 else shown
    elif request.get("collection") and request.get("experiment"):
        where = f"{request['collection']}/{request['experiment']}"
    if where is None:
        return table.stem
    return f"Synapses in {where}" + (f" ({pipeline})" if pipeline else "")


def register(app: typer.Typer) -> None:
    """Add ``report`` to the root app."""
    app.command("report")(report)
