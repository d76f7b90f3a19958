"""The seeded synthetic experiment: determinism, channels, ground truth."""

from __future__ import annotations

import numpy as np
import pytest

from synapse_pipelines.science.synthetic import ALL_CHANNELS, make_experiment

SHAPE = (12, 128, 160)


@pytest.fixture(scope="module")
def experiment():
    return make_experiment(SHAPE, seed=11, n_synapses=40)


def test_same_seed_same_data_and_other_seed_differs(experiment) -> None:
    again = make_experiment(SHAPE, seed=11, n_synapses=40)
    for name in ALL_CHANNELS:
        np.testing.assert_array_equal(again.channels[name], experiment.channels[name])
    np.testing.assert_array_equal(again.annotation, experiment.annotation)
    np.testing.assert_array_equal(again.synapse_centroids, experiment.synapse_centroids)
    other = make_experiment(SHAPE, seed=12, n_synapses=40)
    assert not np.array_equal(other.channels["Synapsin647"], experiment.channels["Synapsin647"])


def test_channel_subset_renders_identical_arrays(experiment) -> None:
    subset = make_experiment(SHAPE, seed=11, n_synapses=40, channels=["PSD95_488", "DAPI1st"])
    assert sorted(subset.channels) == ["DAPI1st", "PSD95_488"]
    for name in subset.channels:
        np.testing.assert_array_equal(subset.channels[name], experiment.channels[name])


def test_channels_are_read_only_uint8_zyx(experiment) -> None:
    assert len(experiment.channels) >= 6
    assert {"Synapsin647", "PSD95_488", "VGluT1_647", "GAD647", "gephyrin594", "DAPI1st"} <= set(
        experiment.channels
    )
    for arr in experiment.channels.values():
        assert arr.dtype == np.uint8 and arr.shape == SHAPE
        assert not arr.flags.writeable
    assert experiment.annotation.dtype == np.uint64
    assert experiment.voxel_unit == "nanometers"
    z, y, _x = experiment.voxel_size
    assert z != y  # anisotropic voxels


def test_annotation_labels_each_synapse_at_its_centroid(experiment) -> None:
    cents = experiment.synapse_centroids
    assert cents.shape == (40, 3)
    assert int(experiment.annotation.max()) == 40
    ids = experiment.annotation[tuple(np.rint(cents).astype(int).T)]
    # every synapse's own label covers (or is next to) its centroid
    assert (ids == np.arange(1, 41)).mean() >= 0.9


def test_puncta_are_where_the_truth_says(experiment) -> None:
    syn = experiment.channels["Synapsin647"].astype(float)
    psd = experiment.channels["PSD95_488"].astype(float)
    at = tuple(np.rint(experiment.synapse_centroids).astype(int).T)
    assert syn[at].mean() > syn.mean() + 3 * syn.std()
    assert psd[at].mean() > psd.mean() + 3 * psd.std()
    # decoys: synapsin-only puncta are bright in synapsin but not in PSD95
    d = tuple(np.rint(experiment.decoys["synapsin_only"]).astype(int).T)
    assert syn[d].mean() > syn.mean() + 3 * syn.std()
    assert psd[d].mean() < psd.mean() + psd.std()
    p = tuple(np.rint(experiment.decoys["psd_only"]).astype(int).T)
    assert psd[p].mean() > psd.mean() + 3 * psd.std()
    assert syn[p].mean() < syn.mean() + syn.std()
    # VGluT1 sits on (most) synapses, GAD on inhibitory ones, DAPI has nuclei
    vglut = experiment.channels["VGluT1_647"].astype(float)
    assert vglut[at].mean() > vglut.mean() + 2 * vglut.std()
    gad = experiment.channels["GAD647"].astype(float)
    inh = tuple(np.rint(experiment.decoys["inhibitory"]).astype(int).T)
    assert gad[inh].mean() > gad[at].mean() + 2 * gad.std()


def test_bad_arguments_are_clear() -> None:
    with pytest.raises(ValueError, match="unknown synthetic channel"):
        make_experiment(SHAPE, seed=1, channels=["Nope"])
    with pytest.raises(ValueError, match="do not fit"):
        make_experiment((4, 16, 16), seed=1, n_synapses=500)
