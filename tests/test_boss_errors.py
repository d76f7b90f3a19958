"""Client failure handling against real HTTP: retries, permissions, missing names, secrecy."""

from __future__ import annotations

import contextlib
import logging
import socket
import threading

import numpy as np
import pytest

from synapse_pipelines.core.errors import BossError
from synapse_pipelines.core.geometry import Box
from synapse_pipelines.io.boss_client import BossClient
from synapse_pipelines.io.boss_resources import CoordinateFrame, check_box_in_frame
from synapse_pipelines.local.boss_api_errors import ApiError


@contextlib.contextmanager
def fault(boss_server, *, status: int, times: int, path_part: str = "/cutout/"):
    """Make the next ``times`` matching requests fail with ``status``; yields the counter."""
    app = boss_server.server.app
    state = {"left": times, "seen": 0}
    lock = threading.Lock()

    def hook(method: str, path: str) -> None:
        if path_part in path:
            with lock:
                state["seen"] += 1
                if state["left"] > 0:
                    state["left"] -= 1
                    raise ApiError(status, 9002, f"injected {status}")

    app.fault_hook = hook
    try:
        yield state
    finally:
        app.fault_hook = None


def _client(boss_server, **kw) -> tuple[BossClient, list[float]]:
    sleeps: list[float] = []
    client = boss_server.client(**kw)
    client.sleep = sleeps.append
    return client, sleeps


def test_5xx_is_retried_with_backoff_then_succeeds(boss_server, boss_synthetic) -> None:
    client, sleeps = _client(boss_server, max_retries=5, backoff=0.1)
    box = Box((0, 0, 0), (4, 32, 32))
    with fault(boss_server, status=503, times=3) as state:
        got = client.pull("synthetic", "synth16", "PSD95_488", box)
    np.testing.assert_array_equal(got, boss_synthetic.channels["PSD95_488"][box.slices()])
    assert state["seen"] == 4 and len(sleeps) == 3
    # full jitter under an exponential cap: 0.1, 0.2, 0.4
    assert all(0 <= s <= 0.1 * 2**i for i, s in enumerate(sleeps))


def test_5xx_gives_up_after_max_retries(boss_server, boss_synthetic) -> None:
    client, sleeps = _client(boss_server, max_retries=2)
    with fault(boss_server, status=500, times=100) as state, pytest.raises(BossError) as err:
        client.pull("synthetic", "synth16", "PSD95_488", Box((0, 0, 0), (1, 8, 8)))
    assert state["seen"] == 3 and len(sleeps) == 2
    assert err.value.status == 500 and "after 3 attempts" in str(err.value)


def test_4xx_is_not_retried(boss_server, boss_synthetic) -> None:
    client, sleeps = _client(boss_server)
    with fault(boss_server, status=400, times=100) as state, pytest.raises(BossError):
        client.pull("synthetic", "synth16", "PSD95_488", Box((0, 0, 0), (1, 8, 8)))
    assert state["seen"] == 1 and sleeps == []


def test_wrong_token_is_not_accepted_without_the_token(boss_server, boss_synthetic):
    """401 is a token BOSS does not accept (not a permission: that is 403); the message
    names the request and the resource it was for."""
    secret = "wrong-token-that-must-not-leak-123"
    client, sleeps = _client(boss_server, token=secret)
    with pytest.raises(BossError) as err:
        client.list_channels("synthetic", "synth16")
    assert "did not accept the token" in str(err.value)
    assert "(HTTP 401 on list channels of synthetic/synth16)" in str(err.value)
    assert "lacks permission" not in str(err.value)
    assert "BOSS_TOKEN" in str(err.value.hint)
    assert err.value.status == 401 and sleeps == []
    assert secret not in str(err.value) and secret not in repr(client)
    assert err.value.__cause__ is None  # no intern exception (with request details) chained


def test_read_only_token_gets_403_on_write(boss_server, boss_synthetic) -> None:
    reader = boss_server.client(token=boss_server.read_only_token)
    box = Box((0, 0, 0), (1, 8, 8))
    assert reader.pull("synthetic", "synth16", "PSD95_488", box).shape == (1, 8, 8)
    with pytest.raises(BossError) as err:
        reader.push("synthetic", "synth16", "PSD95_488", box, np.ones((1, 8, 8), np.uint8))
    assert err.value.status == 403
    assert "the token lacks permission on synthetic/synth16/PSD95_488" in str(err.value)
    assert "(HTTP 403 on " in str(err.value) and " of synthetic/synth16/PSD95_488)" in str(
        err.value
    )


@pytest.mark.parametrize(
    ("col", "exp", "chan", "expected"),
    [
        ("nocol", "synth16", "PSD95_488", "collection 'nocol' does not exist"),
        ("synthetic", "noexp", "PSD95_488", "experiment 'noexp' in collection 'synthetic'"),
        ("synthetic", "synth16", "nochan", "channel 'nochan' in synthetic/synth16"),
    ],
)
def test_404_names_the_missing_resource(boss_server, boss_synthetic, col, exp, chan, expected):
    client, sleeps = _client(boss_server)
    with pytest.raises(BossError, match=expected) as err:
        client.pull(col, exp, chan, Box((0, 0, 0), (1, 1, 1)))
    assert err.value.status == 404 and sleeps == []
    with pytest.raises(BossError, match=expected.split(" in ")[0]):
        if chan == "nochan":
            client.channel(col, exp, chan)
        else:
            client.list_channels(col, exp)


def test_dropped_connections_are_retried_then_reported(caplog) -> None:
    # a port nobody listens on: every attempt is refused
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    secret = "tok-should-not-appear-in-logs"
    client = BossClient(f"127.0.0.1:{port}", "http", secret, max_retries=2, timeout=2)
    sleeps: list[float] = []
    client.sleep = sleeps.append
    with caplog.at_level(logging.DEBUG), pytest.raises(BossError) as err:
        client.list_channels("c", "e")
    assert len(sleeps) == 2 and "failed after 3 attempts: ConnectionError" in str(err.value)
    assert secret not in caplog.text and secret not in str(err.value)


def test_timeouts_are_retried() -> None:
    # accepts connections (kernel backlog) but never answers
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    try:
        port = listener.getsockname()[1]
        client = BossClient(f"127.0.0.1:{port}", "http", "t", max_retries=1, timeout=0.3)
        sleeps: list[float] = []
        client.sleep = sleeps.append
        with pytest.raises(BossError, match="Timeout"):
            client.list_channels("c", "e")
        assert len(sleeps) == 1
    finally:
        listener.close()


def test_constructor_errors_are_clear() -> None:
    with pytest.raises(BossError, match="protocol"):
        BossClient("h", "ftp", "t")
    with pytest.raises(BossError, match="no BOSS token"):
        BossClient("h", "https", "")
    with pytest.raises(ValueError, match="multiple of 16"):
        BossClient("h", "https", "t", piece_shape=(10, 512, 512))


def test_malformed_host_is_a_clear_error_without_retries() -> None:
    client = BossClient("127.0.0.1:notaport", "http", "t", max_retries=3)
    sleeps: list[float] = []
    client.sleep = sleeps.append
    with pytest.raises(BossError, match="cannot send") as err:
        client.list_collections()
    assert err.value.field == "boss_host" and sleeps == []


def test_connections_dropped_mid_request_are_retried(boss_server, boss_synthetic) -> None:
    """A proxy that hangs up on the first two connections, then forwards to the server."""
    import socketserver

    target = ("127.0.0.1", boss_server.server.port)
    state = {"dropped": 0}

    class Proxy(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            if state["dropped"] < 2:
                state["dropped"] += 1
                self.request.recv(65536)
                return  # close without answering: RemoteDisconnected on the client
            with socket.create_connection(target) as upstream:
                self.request.settimeout(5)
                upstream.settimeout(5)
                upstream.sendall(self.request.recv(1 << 20))  # a small GET: one recv
                response = b""
                while b"\r\n\r\n" not in response:
                    response += upstream.recv(1 << 20)
                head, _, body = response.partition(b"\r\n\r\n")
                length = next(
                    int(line.split(b":")[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                )
                while len(body) < length:
                    body += upstream.recv(1 << 20)
                self.request.sendall(head + b"\r\n\r\n" + body)

    class Server(socketserver.ThreadingTCPServer):
        daemon_threads = True
        allow_reuse_address = True

    with Server(("127.0.0.1", 0), Proxy) as proxy:
        thread = threading.Thread(target=proxy.serve_forever, daemon=True)
        thread.start()
        try:
            client = BossClient(
                f"127.0.0.1:{proxy.server_address[1]}", "http", boss_server.token, max_retries=3
            )
            sleeps: list[float] = []
            client.sleep = sleeps.append
            assert "PSD95_488" in client.list_channels("synthetic", "synth16")
            assert state["dropped"] == 2 and len(sleeps) == 2
        finally:
            proxy.shutdown()


@pytest.mark.parametrize(("stop", "article"), [((1, 8, 99), "an x"), ((1, 99, 8), "a y")])
def test_a_box_outside_the_frame_names_the_axis_in_plain_words(
    stop: tuple[int, int, int], article: str
) -> None:
    frame = CoordinateFrame(Box((0, 0, 0), (4, 64, 64)), (70.0, 100.0, 100.0), "nm", "f")
    with pytest.raises(BossError) as err:
        check_box_in_frame(Box((0, 0, 0), stop), frame, "the experiment")
    assert err.value.hint == f"use {article} range within 0:64"
