"""The request model: parsing, clear errors, results key, channel matching, token handling."""

from __future__ import annotations

import json

import boto3
import pytest
from moto import mock_aws

from synapse_pipelines.core.boss_token import resolve_token
from synapse_pipelines.core.channel_selection import select_channels
from synapse_pipelines.core.errors import (
    ChannelSelectionError,
    RequestValidationError,
    SynapsePipelinesError,
    aws_error_code,
)
from synapse_pipelines.core.request import (
    MAX_NAME_LENGTH,
    parse_request,
    sanitize_name,
)

COLLMAN_CHANNELS = [
    "DAPI1st",
    "DAPI2nd",
    "DAPI3rd",
    "GABA488",
    "GAD647",
    "gephyrin594",
    "GS594",
    "MBP488",
    "NR1594",
    "PSD95_488",
    "Synapsin647",
    "VGluT1_647",
    "EM25k",
    "annotation",
]


def base(**overrides):
    data = {
        "boss_host": "api.bossdb.io",
        "collection": "collman",
        "experiment": "collman15v2",
        "z_range": "0,16",
        "y_range": [1000, 1512],
        "x_range": "2000:2512",
    }
    data.update(overrides)
    return data


def problems(data, **kwargs) -> dict[str, str]:
    with pytest.raises(RequestValidationError) as info:
        parse_request(data, **kwargs)
    return dict(info.value.problems)


def test_original_style_ranges_and_results_key():
    request = parse_request(base())
    assert request.z_range == (0, 16)
    assert request.y_range == (1000, 1512)
    assert request.x_range == (2000, 2512)
    assert request.box.shape == (16, 512, 512)
    assert request.voxel_count == 16 * 512 * 512
    # exactly the original's "_".join([...]) for a request whose names are already clean
    assert request.pipeline == "paired-puncta"  # the default: PAIRS
    assert request.results_key == "paired-puncta_collman_collman15v2_z_0_16_y_1000_1512_x_2000_2512"
    nomads = parse_request(base(pipeline="nomads-unsupervised"))  # still accepted by name
    assert nomads.results_key == (
        "nomads-unsupervised_collman_collman15v2_z_0_16_y_1000_1512_x_2000_2512"
    )
    assert request.boss_url == "https://api.bossdb.io"


def test_original_cli_aliases_are_accepted():
    request = parse_request(
        {
            "host": "http://127.0.0.1:8700",
            "col": "c",
            "exp": "e",
            "z-range": "0,2",
            "y-range": "0,2",
            "x-range": "0,2",
        }
    )
    assert (request.boss_host, request.boss_protocol) == ("127.0.0.1:8700", "http")
    assert (request.collection, request.experiment) == ("c", "e")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("10,5", "reversed"),
        ("5,5", "empty"),
        ("-1,5", "negative"),
        ("0.5,5", "whole number"),
        ("a,b", "whole number"),
        ("0,1,2", "exactly two"),
        ([1.5, 3], "whole number"),
        ([True, 3], "whole number"),
        (7, "expected a range"),
        # malformed values that once reached int() and raised TypeError
        ([[0, 1], [2, 3]], "[0, 1] is not a whole number"),
        ([[0], [1]], "is not a whole number"),
        ([None, 2], "None is not a whole number"),
        ([{"a": 1}, 2], "is not a whole number"),
        ([0, [1] * 50], "a list is not a whole number"),
        ([float("nan"), 1], "whole number"),
        ([float("inf"), 1], "whole number"),
        (b"0,1", "expected a range, got bytes"),
        (None, "expected a range"),
        ({"start": 0, "stop": 1}, "expected a range"),
        ("", "exactly two"),
    ],
)
def test_bad_ranges_name_the_field_and_the_fix(value, expected):
    found = problems(base(z_range=value))
    assert list(found) == ["z_range"]
    assert expected in found["z_range"]


def test_every_problem_is_reported_at_once():
    found = problems(
        base(
            collection="bad name!",
            x_range="9,1",
            pipeline="nope",
            notification_email="x",
            zrange="0,1",
        )
    )
    assert set(found) == {"collection", "x_range", "pipeline", "notification_email", "zrange"}
    assert "not a valid BOSS name" in found["collection"] and "'!'" not in found["collection"]
    assert "nomads-unsupervised" in found["pipeline"]  # lists the available pipelines
    assert "spelling" in found["zrange"]


def test_missing_fields_are_named():
    found = problems({"collection": "c"})
    assert {"experiment", "z_range", "y_range", "x_range"} <= set(found)
    assert found["experiment"] == "is required"


def test_voxel_limit_is_configurable():
    found = problems(base(), max_voxels=1000)
    assert "more than allowed here (1,000)" in next(iter(found.values()))
    assert parse_request(base(), max_voxels=None).voxel_count == 16 * 512 * 512
    env = {"SYNAPSE_PIPELINES_MAX_BLOCKWISE_VOXELS": "10"}
    with pytest.raises(RequestValidationError, match="SYNAPSE_PIPELINES_MAX_BLOCKWISE_VOXELS"):
        parse_request(base(), environ=env)


def test_one_job_limit_does_not_stop_a_blockwise_request():
    # PAIRS (the default) runs blockwise: a box above what one job may take is accepted
    # (ValidateRequest then chooses detect_mode "blockwise"); the teravoxel ceiling still holds
    huge = base(z_range="0,1000", y_range="0,100000", x_range="0,100000")  # 10^13 voxels
    env = {"SYNAPSE_PIPELINES_MAX_VOXELS": "10"}
    assert parse_request(huge, environ=env).voxel_count == 10**13
    too_big = base(z_range="0,1001", y_range="0,100000", x_range="0,100000")
    with pytest.raises(RequestValidationError, match="more than a blockwise request may take"):
        parse_request(too_big, environ=env)


def test_bad_host_and_scheme():
    assert "host name" in problems(base(boss_host="api.bossdb.io/v1"))["boss_host"]
    assert "not supported" in str(problems(base(boss_host="ftp://x")))
    assert "drop one" in str(problems(base(boss_host="https://x", boss_protocol="http")))


def test_json_text_and_file(tmp_path):
    path = tmp_path / "request.json"
    path.write_text(json.dumps(base()))
    assert parse_request(path).results_key == parse_request(json.dumps(base())).results_key
    assert parse_request(str(path)).collection == "collman"
    broken = tmp_path / "broken.json"
    broken.write_text("{")
    with pytest.raises(SynapsePipelinesError, match="not valid JSON"):
        parse_request(broken)
    with pytest.raises(SynapsePipelinesError, match="no such file"):
        parse_request(tmp_path / "missing.json")
    listing = tmp_path / "list.json"
    listing.write_text("[1, 2]")
    with pytest.raises(SynapsePipelinesError, match="not an object"):
        parse_request(listing)


def test_sanitize_name_makes_valid_boss_names():
    assert sanitize_name("nomads.v2 x/y") == "nomads_v2_x_y"
    long_a = sanitize_name("a" * 300)
    long_b = sanitize_name("a" * 299 + "b")
    assert len(long_a) == MAX_NAME_LENGTH and long_a != long_b


def test_results_key_tells_detection_settings_apart():
    """Other settings of the same box get another key (so other BOSS channels and another S3
    prefix); the default settings keep the original's key; one setting written two ways, or
    the same request again, gets the same key."""
    original = "paired-puncta_collman_collman15v2_z_0_16_y_1000_1512_x_2000_2512"
    assert parse_request(base()).results_key == original
    assert parse_request(base(pipeline_parameters={})).results_key == original
    params = parse_request(base(pipeline_parameters={"seed_level": 1.5, "weak_seed_level": 1.5}))
    assert params.results_key.startswith(original + "_settings_")
    other = parse_request(base(pipeline_parameters={"seed_level": 2.0}))
    pre = parse_request(base(presynaptic_channel="VGluT1_647"))
    post = parse_request(base(postsynaptic_channel="NR1594"))
    keys = {original, params.results_key, other.results_key, pre.results_key, post.results_key}
    assert len(keys) == 5
    # canonical: key order and 2 vs 2.0 do not matter; a re-parse is the same key
    same = parse_request(base(pipeline_parameters={"weak_seed_level": 1.5, "seed_level": 1.5}))
    assert same.results_key == params.results_key
    assert parse_request(base(pipeline_parameters={"seed_level": 2})).results_key == (
        other.results_key
    )
    assert parse_request(params.public_dict()).results_key == params.results_key
    # within the name limit the module keeps, settings still told apart when the key is cut
    long_a = parse_request(base(experiment="e" * 190, pipeline_parameters={"seed_level": 1.5}))
    long_b = parse_request(base(experiment="e" * 190, pipeline_parameters={"seed_level": 1.6}))
    assert len(long_a.results_key) <= MAX_NAME_LENGTH
    assert long_a.results_key != long_b.results_key


def test_public_dict_never_holds_the_token():
    request = parse_request(base(token="super-secret-token-123"))
    assert request.token is not None
    dumped = json.dumps(request.public_dict())
    assert "super-secret-token-123" not in dumped
    assert "super-secret-token-123" not in repr(request) + str(request)
    assert request.public_dict()["z_range"] == [0, 16]
    # round trip: the public dict is itself a valid request
    assert parse_request(request.public_dict()).results_key == request.results_key


def test_default_channels_match_like_the_original():
    request = parse_request(base())
    selection = select_channels(COLLMAN_CHANNELS, request)
    assert (selection.presynaptic, selection.postsynaptic) == ("Synapsin647", "PSD95_488")


def test_explicit_channels_override():
    request = parse_request(base(presynaptic_channel="VGluT1_647", postsynaptic_channel="NR1594"))
    selection = select_channels(COLLMAN_CHANNELS, request)
    assert (selection.presynaptic, selection.postsynaptic) == ("VGluT1_647", "NR1594")


def test_ambiguous_and_missing_channels_list_the_experiment_channels():
    request = parse_request(base())
    with pytest.raises(ChannelSelectionError) as info:
        select_channels(["Synapsin1", "Synapsin2", "PSD95"], request)
    assert "several channels" in str(info.value) and "presynaptic_channel" in str(info.value)
    with pytest.raises(ChannelSelectionError) as info:
        select_channels(["DAPI", "Synapsin1"], request)
    assert "DAPI, Synapsin1" in str(info.value) and "postsynaptic_channel" in str(info.value)
    wrong_case = parse_request(base(presynaptic_channel="synapsin647"))
    with pytest.raises(ChannelSelectionError, match="did you mean 'Synapsin647'"):
        select_channels(COLLMAN_CHANNELS, wrong_case)


def test_same_channel_twice_is_refused():
    found = problems(base(presynaptic_channel="A", postsynaptic_channel="A"))
    assert "same channel" in next(iter(found.values()))


def test_resolve_token_order_and_secrets_manager():
    request = parse_request(base(token_secret="synapse-pipelines/boss-token"))
    assert resolve_token(request, environ={"BOSS_TOKEN": "from-env"}) == "from-env"
    with mock_aws():
        client = boto3.client("secretsmanager", region_name="us-east-1")
        client.create_secret(Name="synapse-pipelines/boss-token", SecretString="tok-1")
        assert resolve_token(request, environ={}, secrets_client=client) == "tok-1"
        client.create_secret(Name="json-secret", SecretString='{"token": "tok-2"}')
        json_request = parse_request(base(token_secret="json-secret"))
        assert resolve_token(json_request, environ={}, secrets_client=client) == "tok-2"
        missing = parse_request(base(token_secret="does-not-exist"))
        with pytest.raises(SynapsePipelinesError, match="cannot read secret") as info:
            resolve_token(missing, environ={}, secrets_client=client)
        assert "tok-" not in str(info.value)
    with pytest.raises(SynapsePipelinesError, match="no BOSS token"):
        resolve_token(parse_request(base()), environ={})


def test_aws_error_code_reads_botocore_errors_only():
    from botocore.exceptions import ClientError

    missing = ClientError({"Error": {"Code": "NoSuchKey", "Message": "gone"}}, "GetObject")
    assert aws_error_code(missing) == "NoSuchKey"
    assert aws_error_code(ClientError({}, "GetObject")) is None
    assert aws_error_code(ValueError("not from AWS")) is None
    other = ValueError("an HTTP error carries a response object, not a mapping")
    other.response = object()  # type: ignore[attr-defined]
    assert aws_error_code(other) is None


def test_a_resolution_level_gets_its_own_key_and_output_experiment():
    """Level 0 keeps the original's key and dict; level r > 0 adds ``_res_<r>`` (its ranges
    count that level's voxels) and, unless the request names one, publishes to
    ``nomads_predictions_res<r>`` (a frame made for that level)."""
    original = parse_request(base())
    assert "resolution" not in original.public_dict()
    assert parse_request(base(resolution=0)).results_key == original.results_key
    level = parse_request(base(resolution=5))
    assert level.results_key == original.results_key + "_res_5"
    assert level.output_experiment == "nomads_predictions_res5"
    assert parse_request(level.public_dict()).results_key == level.results_key
    named = parse_request(base(resolution="5", output_experiment="mine"))
    assert named.resolution == 5 and named.output_experiment == "mine"
    for bad in (-1, 16, "five", 1.5):
        with pytest.raises(RequestValidationError, match="resolution"):
            parse_request(base(resolution=bad))
