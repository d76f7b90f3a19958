"""Running the local BOSS-compatible server: one server class, in a thread or in a child.

Why a local BOSS: no usable one exists (bossphorus is broken on numpy 2), yet every BOSS test
and the demo must talk real HTTP to something that behaves like BossDB. The server is
:class:`~synapse_pipelines.local.boss_app.BossApp` over
:class:`~synapse_pipelines.local.boss_storage.BossStore`, served by waitress (threads,
``max_request_body_size`` just above BOSS's 520 MiB cutout limit).

Owns the one way to run it, :class:`LocalBossServer`: :meth:`~LocalBossServer.start` serves
on a background thread of this process (tests, the demo), :meth:`~LocalBossServer.serve_forever`
in the calling thread until interrupted (``synapse-pipelines boss serve``).
:class:`BossServerProcess` runs ``synapse-pipelines boss serve`` as a child process, for
callers whose own threads should not share a GIL with the server (benchmarks). Both expose
``host`` (``127.0.0.1:PORT``, what intern and a request's ``boss_host`` want), ``url`` and
``port`` and are context managers; the token is never in ``repr()`` or a child's argv.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import IO

from waitress.server import create_server

from synapse_pipelines.local.boss_app import MAX_CUTOUT_BYTES, BossApp
from synapse_pipelines.local.boss_storage import BossStore

#: The URL in :func:`ready_message`.
_READY_URL = re.compile(r" at (https?://\S+) \(Ctrl-C to stop\)$")
#: This installation's CLI, run by the current interpreter (the console script may not be on
#: PATH, e.g. in a virtual environment that is not activated).
_CLI = [sys.executable, "-c", "from synapse_pipelines.cli import main; main()"]


def ready_message(data_dir: str | os.PathLike[str], url: str) -> str:
    """What ``boss serve`` prints on stderr once it listens; :class:`BossServerProcess` waits
    for this line."""
    return f"local BOSS serving {data_dir} at {url} (Ctrl-C to stop)"


class LocalBossServer:
    """The local BOSS server on waitress threads; ``port=0`` picks a free port.

    >>> with LocalBossServer(tmp_dir, token="secret") as srv:
    ...     remote = BossRemote({"protocol": "http", "host": srv.host, "token": "secret"})

    ``host`` is ``"127.0.0.1:<port>"`` (what intern's config and a request's boss_host want);
    ``url`` is ``"http://127.0.0.1:<port>"``. ``access_log`` logs one line per request
    (method, path, status, bytes, milliseconds) at INFO; embedded servers stay quiet.
    """

    def __init__(
        self,
        data_dir: str | os.PathLike[str],
        token: str,
        *,
        port: int = 0,
        bind: str = "127.0.0.1",
        threads: int = 8,
        read_only_tokens: Iterable[str] = (),
        max_cutout_bytes: int = MAX_CUTOUT_BYTES,
        access_log: bool = False,
    ):
        self.data_dir = Path(data_dir)
        self.app = BossApp(
            BossStore(data_dir),
            [token],
            read_only_tokens=read_only_tokens,
            max_cutout_bytes=max_cutout_bytes,
        )
        self.app.access_log = access_log
        self._server = create_server(
            self.app,
            host=bind,
            port=port,
            threads=threads,
            max_request_body_size=max_cutout_bytes + (1 << 20),
            # big cutouts: larger socket buffers cut syscalls on loopback
            recv_bytes=1 << 18,
            outbuf_overflow=1 << 30,
            inbuf_overflow=1 << 30,
            connection_limit=256,
            channel_timeout=300,
            clear_untrusted_proxy_headers=True,
            ident="synapse-pipelines-local-boss",
        )
        self.port: int = self._server.effective_port
        self.host = f"{bind}:{self.port}"
        self.url = f"http://{self.host}"
        self._thread: threading.Thread | None = None

    def __repr__(self) -> str:
        return f"LocalBossServer(url={self.url!r}, data_dir={str(self.data_dir)!r})"

    @property
    def store(self) -> BossStore:
        return self.app.store

    def start(self) -> LocalBossServer:
        """Serve on a background thread (returns once the port accepts connections)."""
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._server.run, name=f"local-boss-{self.port}", daemon=True
            )
            self._thread.start()
            _wait_for_port("127.0.0.1" if self.host.startswith("0.0.0.0") else self.host)
        return self

    def serve_forever(self) -> None:
        """Serve in the calling thread until Ctrl-C or SIGTERM, then close the server."""
        main = threading.current_thread() is threading.main_thread()
        # SIGTERM (a service manager's stop, BossServerProcess.stop) -> KeyboardInterrupt, so
        # the server closes cleanly; only the main thread may set signal handlers
        previous = signal.signal(signal.SIGTERM, signal.default_int_handler) if main else None
        try:
            self._server.run()
        except KeyboardInterrupt:
            pass
        finally:
            self._server.close()
            if self.app.downsampler is not None:
                self.app.downsampler.close()
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)

    def stop(self) -> None:
        """Close every connection (idle keep-alive ones too) and wait for the loop to end."""
        if self._thread is None:
            return
        server = self._server

        def close_all() -> None:  # runs in the server's own loop thread
            for channel in list(server._map.values()):
                with contextlib.suppress(Exception):
                    channel.close()

        try:
            server.trigger.pull_trigger(close_all)
        except OSError:
            # Seen rarely at the end of a long test session: the trigger pipe's fd is already
            # closed, so the loop cannot be woken. Close the channels from here instead; the
            # loop then finds its map empty and ends.
            close_all()
        self._thread.join(timeout=10)
        server.task_dispatcher.shutdown(timeout=5)
        self._thread = None
        if self.app.downsampler is not None:
            self.app.downsampler.close()

    def __enter__(self) -> LocalBossServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class BossServerProcess:
    """``synapse-pipelines boss serve`` as a child process, with :class:`LocalBossServer`'s
    interface (``host``, ``url``, ``port``, context manager).

    The token travels in the child's environment (``BOSS_TOKEN``), never in argv. The child's
    stderr is forwarded to ours once it has said it is ready.
    """

    def __init__(
        self,
        data_dir: str | os.PathLike[str],
        token: str,
        *,
        port: int = 0,
        bind: str = "127.0.0.1",
        threads: int = 8,
        startup_timeout: float = 30.0,
    ):
        self.data_dir = Path(data_dir)
        self._token = token
        self._port = port
        self._bind = bind
        self._threads = threads
        self._timeout = startup_timeout
        self._proc: subprocess.Popen[str] | None = None
        self.port = 0
        self.host = ""
        self.url = ""

    def __repr__(self) -> str:
        return f"BossServerProcess(url={self.url!r}, data_dir={str(self.data_dir)!r})"

    def start(self) -> BossServerProcess:
        cmd = [*_CLI, "boss", "serve", "--data-dir", str(self.data_dir),
               "--port", str(self._port), "--host", self._bind,
               "--threads", str(self._threads), "--quiet"]  # fmt: skip
        env = {**os.environ, "BOSS_TOKEN": self._token}
        self._proc = subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + self._timeout
        assert self._proc.stderr is not None
        said: list[str] = []
        for line in self._proc.stderr:
            found = _READY_URL.search(line.rstrip("\n"))
            if found:
                self.url = found.group(1)
                break
            said.append(line)
        if not self.url:
            self.stop()
            raise RuntimeError(f"local BOSS server failed to start (said {''.join(said)!r})")
        threading.Thread(
            target=_forward, args=(self._proc.stderr,), name="local-boss-stderr", daemon=True
        ).start()
        self.host = self.url.split("://", 1)[1]
        self.port = int(self.host.rsplit(":", 1)[1])
        _wait_for_port(self.host, timeout=max(1.0, deadline - time.monotonic()))
        return self

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(timeout=10)
            self._proc = None

    def __enter__(self) -> BossServerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _forward(stream: IO[str]) -> None:
    """Copy a child's output to our stderr until it closes (its pipe must never fill up)."""
    with contextlib.suppress(ValueError, OSError):  # closed at shutdown
        for line in stream:
            sys.stderr.write(line)


def _wait_for_port(host: str, timeout: float = 10.0) -> None:
    name, _, port = host.rpartition(":")
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((name or "127.0.0.1", int(port)), timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)
