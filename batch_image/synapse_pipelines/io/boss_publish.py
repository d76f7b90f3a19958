"""Publishing predictions to BOSS: where they go, the guards, the push.

Owns the output channel names, :class:`PublishedChannels` (JSON-safe, for state payloads and
manifests), :func:`prepare_publication` (checks and creates the output once),
:func:`push_predictions` (one box, or one block of a blockwise run) and
:func:`publish_predictions` (both, for a whole request). API::

    publish_predictions(client, request, mask, labels=None, frame=None) -> PublishedChannels
    prepare_publication(client, request, frame=None, *, labels=True) -> PublishedChannels
    published_channels(client, request, *, labels=True) -> PublishedChannels   # no BOSS call
    push_predictions(client, published, box, mask, labels=None) -> None
    downsample_predictions(client, published, *, wait_seconds=0.0) -> dict   # never raises
    mask_channel_name(results_key) / labels_channel_name(results_key) -> str

Overwrite guards: never into the request's input channels (when the output experiment is
the input experiment, an existing channel of an output name must carry
:data:`~synapse_pipelines.io.boss_resources.OUTPUT_MARKER`, i.e. be an earlier output of
ours), never into an existing channel of another datatype or type.

Output channel names: the original pushed the 0/255 mask as channel
``results_key + "_" + key`` where ``key`` was the key of its ``data_dict`` - in
nomads_cloud's ``driver.py`` that dict was ``{results_key: results}``, so the channel was
``<results_key>_<results_key>``. :func:`mask_channel_name` keeps that name so old links and
scripts still find the data. The labelled ids (new) go to ``<results_key>_synapse_ids``, a
uint64 ``annotation`` channel whose source is the mask channel.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from synapse_pipelines.core.errors import BossError
from synapse_pipelines.core.geometry import Box, voxel_size_text
from synapse_pipelines.io.boss_client import BossClient
from synapse_pipelines.io.boss_downsample import request_downsampling
from synapse_pipelines.io.boss_resources import OUTPUT_MARKER, CoordinateFrame, check_box_in_frame

if TYPE_CHECKING:
    from synapse_pipelines.core.request import SynapseRequest


@dataclass(frozen=True)
class PublishedChannels:
    host: str
    protocol: str
    collection: str
    experiment: str
    mask_channel: str  # uint8 image, 0/255
    labels_channel: str | None  # uint64 annotation, synapse ids
    box: Box

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe (for state payloads and manifests); no token anywhere."""
        return {
            "boss_url": f"{self.protocol}://{self.host}",
            "collection": self.collection,
            "experiment": self.experiment,
            "mask_channel": self.mask_channel,
            "labels_channel": self.labels_channel,
            "z_range": [self.box.start[0], self.box.stop[0]],
            "y_range": [self.box.start[1], self.box.stop[1]],
            "x_range": [self.box.start[2], self.box.stop[2]],
        }


def mask_channel_name(results_key: str) -> str:
    """The original's channel for the 0/255 mask: ``<results_key>_<key>``, key = results_key."""
    return f"{results_key}_{results_key}"


def labels_channel_name(results_key: str) -> str:
    return f"{results_key}_synapse_ids"


def publish_predictions(
    client: BossClient,
    request: SynapseRequest,
    mask: np.ndarray,
    labels: np.ndarray | None = None,
    frame: CoordinateFrame | None = None,
) -> PublishedChannels:
    """Push the 0/255 mask (and the uint64 synapse ids) of ``request.box`` to the output.

    ``frame`` is the input experiment's coordinate frame (from :meth:`BossClient.validate_box`;
    fetched when omitted): a missing output experiment is created on it. ``labels`` may be
    omitted (then only the mask channel is written and ``labels_channel`` is None). The
    input's coordinate frame in BOSS is the authority on voxel sizes.
    Idempotent: a re-run writes the same values to the same region (all-zero pieces included).
    Refuses to write into the request's input channels, and into an existing output channel
    of another datatype or type.
    """
    box = request.box
    if tuple(mask.shape) != box.shape or (labels is not None and tuple(labels.shape) != box.shape):
        shapes = f"mask {mask.shape}" + (f", labels {labels.shape}" if labels is not None else "")
        raise BossError(f"{shapes} must have the request's shape {box.shape} (z, y, x)")
    published = prepare_publication(client, request, frame, labels=labels is not None)
    push_predictions(client, published, box, mask, labels)
    return published


def prepare_publication(
    client: BossClient,
    request: SynapseRequest,
    frame: CoordinateFrame | None = None,
    *,
    labels: bool = True,
) -> PublishedChannels:
    """Check and create the output channels of ``request`` (once, before any push): refuses
    the request's input channels and channels of another datatype or type; creates a missing
    output experiment on the input's coordinate ``frame`` (fetched when omitted)."""
    box = request.box
    if frame is None:
        frame = client.coordinate_frame(request.collection, request.experiment)
    col, exp, key = request.output_collection, request.output_experiment, request.results_key
    mask_name, labels_name = mask_channel_name(key), labels_channel_name(key)
    targets = (mask_name, labels_name) if labels else (mask_name,)
    _refuse_input_channels(client, request, targets)

    out_frame = client.ensure_experiment(col, exp, frame)
    if not np.allclose(out_frame.voxel_size, frame.voxel_size, rtol=1e-6):
        # a shared output experiment made for another input (or another resolution level):
        # these predictions would land on its grid, misplaced and mis-sized
        raise BossError(
            f"output experiment {col}/{exp} has voxels of {voxel_size_text(out_frame.voxel_size)}"
            f" {out_frame.voxel_unit}, these predictions voxels of "
            f"{voxel_size_text(frame.voxel_size)} {frame.voxel_unit}",
            field="output_experiment",
            hint="choose an output_experiment made for this input and resolution, or a new one",
        )
    check_box_in_frame(box, out_frame, f"output experiment {col}/{exp}")
    description = f"{OUTPUT_MARKER}: {key}"
    client.ensure_channel(
        col, exp, mask_name, datatype="uint8", type="image", description=f"{description} mask"
    )
    if labels:
        client.ensure_channel(
            col,
            exp,
            labels_name,
            datatype="uint64",
            type="annotation",
            sources=[mask_name],
            description=f"{description} synapse ids",
        )
    return published_channels(client, request, labels=labels)


def published_channels(
    client: BossClient, request: SynapseRequest, *, labels: bool = True
) -> PublishedChannels:
    """Where ``request``'s predictions go (no BOSS call: block jobs of a blockwise publish
    find the channels :func:`prepare_publication` made)."""
    key = request.results_key
    return PublishedChannels(
        host=client.host,
        protocol=client.protocol,
        collection=request.output_collection,
        experiment=request.output_experiment,
        mask_channel=mask_channel_name(key),
        labels_channel=labels_channel_name(key) if labels else None,
        box=request.box,
    )


def push_predictions(
    client: BossClient,
    published: PublishedChannels,
    box: Box,
    mask: np.ndarray,
    labels: np.ndarray | None = None,
) -> None:
    """Write one box (the request's, or one block of it) of the mask as 0/255 and of the
    ids to channels made by :func:`prepare_publication`."""
    if not published.box.contains(box):
        raise BossError(f"{box} lies outside the published box {published.box}")
    col, exp = published.collection, published.experiment
    # the original's values: any detection is 255
    client.push(
        col, exp, published.mask_channel, box, np.where(mask > 0, np.uint8(255), np.uint8(0))
    )
    if labels is not None and published.labels_channel is not None:
        if labels.size and labels.min() < 0:
            raise BossError("synapse ids must be non-negative integers")
        client.push(col, exp, published.labels_channel, box, labels.astype(np.uint64, copy=False))


def downsample_predictions(
    client: BossClient, published: PublishedChannels, *, wait_seconds: float = 0.0
) -> dict[str, Any]:
    """After every block of the channels is written: start BOSS's downsampling of the mask
    and ids channels where the server has the service, and return the JSON-safe report
    (:func:`~synapse_pipelines.io.boss_downsample.request_downsampling`: started / already
    downsampled / not supported / failed with the reason). Never raises for BOSS's answer:
    the pushed data stays as it is."""
    channels = [c for c in (published.mask_channel, published.labels_channel) if c]
    return request_downsampling(
        client, published.collection, published.experiment, channels, wait_seconds=wait_seconds
    )


def _refuse_input_channels(
    client: BossClient, request: SynapseRequest, targets: Sequence[str]
) -> None:
    explicit = {c for c in (request.presynaptic_channel, request.postsynaptic_channel) if c}
    same_experiment = (request.output_collection, request.output_experiment) == (
        request.collection,
        request.experiment,
    )
    for name in targets:
        if same_experiment and name in explicit:
            raise _input_channel_error(request, name)
        if same_experiment:
            desc = client.channel_description(request.collection, request.experiment, name)
            if desc is not None and not desc.startswith(OUTPUT_MARKER):
                raise _input_channel_error(request, name)


def _input_channel_error(request: SynapseRequest, name: str) -> BossError:
    return BossError(
        f"output channel {request.output_collection}/{request.output_experiment}/{name} is an "
        "input channel of this request (it exists and was not written by synapse-pipelines); "
        "refusing to overwrite input data",
        field="output_experiment",
        hint="choose an output_collection/output_experiment other than the input's",
    )
