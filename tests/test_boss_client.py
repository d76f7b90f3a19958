"""BossClient against the real local BOSS server, through intern and HTTP (no mocks)."""

from __future__ import annotations

import numpy as np
import pytest

from synapse_pipelines.core.errors import BossError
from synapse_pipelines.core.geometry import Box
from synapse_pipelines.io.boss_client import BossClient


def test_list_channels_and_channel_info(boss_synthetic, boss_client: BossClient) -> None:
    names = boss_client.list_channels(boss_synthetic.collection, boss_synthetic.experiment)
    assert set(names) == {*boss_synthetic.channels, "annotation"}
    info = boss_client.channel(boss_synthetic.collection, boss_synthetic.experiment, "annotation")
    assert (info.name, info.datatype, info.type) == ("annotation", "uint64", "annotation")


def test_coordinate_frame_reads_extent_and_voxel_size(boss_synthetic, boss_client) -> None:
    frame = boss_client.coordinate_frame(boss_synthetic.collection, boss_synthetic.experiment)
    shape = next(iter(boss_synthetic.channels.values())).shape
    assert frame.extent == Box((0, 0, 0), shape)
    assert frame.voxel_size == boss_synthetic.frame.voxel_size
    assert frame.voxel_unit == "nanometers"


def test_pull_returns_exact_voxels_in_channel_dtype_and_writable(
    boss_synthetic, boss_client
) -> None:
    box = Box((3, 17, 250), (13, 200, 256))  # unaligned, touching the frame's x stop
    for name in ("PSD95_488", "annotation"):
        expected = (
            boss_synthetic.annotation if name == "annotation" else boss_synthetic.channels[name]
        )[box.slices()]
        got = boss_client.pull(boss_synthetic.collection, boss_synthetic.experiment, name, box)
        assert got.dtype == expected.dtype
        np.testing.assert_array_equal(got, expected)
        assert got.flags.writeable
        got[0, 0, 0] = 1  # must not raise


def test_validate_box_accepts_stop_equal_to_extent(boss_synthetic, boss_client) -> None:
    frame = boss_synthetic.frame
    boss_client.validate_box(boss_synthetic.collection, boss_synthetic.experiment, frame.extent)


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_validate_box_names_the_axis_past_the_extent(boss_synthetic, boss_client, axis) -> None:
    stop = list(boss_synthetic.frame.extent.stop)
    stop[axis] += 1
    with pytest.raises(BossError) as err:
        boss_client.validate_box(
            boss_synthetic.collection, boss_synthetic.experiment, Box((0, 0, 0), tuple(stop))
        )
    axis_name = "zyx"[axis]
    assert err.value.field == f"{axis_name}_range"
    assert f"{axis_name} range 0:{stop[axis]}" in str(err.value)


def test_pull_channels_returns_every_channel_exactly(boss_synthetic, boss_client) -> None:
    box = Box((0, 0, 0), (16, 256, 256))
    names = [*boss_synthetic.channels, "annotation"]
    got = boss_client.pull_channels(
        boss_synthetic.collection, boss_synthetic.experiment, names, box
    )
    assert list(got) == names
    for name in boss_synthetic.channels:
        np.testing.assert_array_equal(got[name], boss_synthetic.channels[name])
    np.testing.assert_array_equal(got["annotation"], boss_synthetic.annotation)
