"""BOSS push/pull throughput against the local BOSS-compatible server, vs the original.

Pushes a 64x1024x1024 uint8 prediction volume (a realistic sparse 0/255 mask by default) to
a local server over loopback and pulls it back with
:class:`synapse_pipelines.io.boss_client.BossClient`; then, in the same run, pushes it the way
nomads_cloud's ``nd_boss.boss_push`` did: one ``create_cutout`` POST per z-slice, each
preceded by a ``get_project`` of the channel, and prints the ratio. Run::

    python benchmarks/bench_boss.py [--shape 64,1024,1024] [--density 0.01] [--repeat 3]
        [--workers 8] [--random]

``--random`` pushes incompressible uniform noise instead of a mask (worst case for blosc).
MB are 10^6 bytes of uncompressed voxels. By default the server runs as a child process (as a
real BOSS would be a separate process); ``--server thread`` runs it in this process.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import numpy as np
from intern.remote.boss import BossRemote
from intern.resource.boss.resource import ChannelResource

from synapse_pipelines.core.geometry import Box
from synapse_pipelines.io.boss_client import BossClient
from synapse_pipelines.io.boss_resources import CoordinateFrame
from synapse_pipelines.local.boss_process import BossServerProcess, LocalBossServer

TOKEN = "bench-token"


def make_volume(shape: tuple[int, int, int], density: float, noise: bool) -> np.ndarray:
    rng = np.random.default_rng(0)
    if noise:
        return rng.integers(0, 256, shape, dtype=np.uint8)
    # blobs like a prediction mask: mostly zero, runs of 255
    vol = np.zeros(shape, np.uint8)
    n = int(density * vol.size / 27)
    zs, ys, xs = (rng.integers(0, s - 3, n) for s in shape)
    for dz in range(3):
        for dy in range(3):
            for dx in range(3):
                vol[zs + dz, ys + dy, xs + dx] = 255
    return vol


def original_push(remote: BossRemote, col: str, exp: str, chan: str, data: np.ndarray) -> None:
    """nd_boss.boss_push's loop (per z: get_project, then a one-slice create_cutout)."""
    z, y, x = data.shape
    resource = ChannelResource(chan, col, exp, "image", "", 0, "uint8", 0)
    for zi in range(z):
        old_channel = remote.get_project(resource)
        remote.create_cutout(
            old_channel, 0, (0, x), (0, y), (zi, zi + 1), data[zi].reshape(1, y, x)
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="64,1024,1024")
    parser.add_argument("--density", type=float, default=0.01)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--original-repeat", type=int, default=3)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--piece-z", type=int, default=32, help="piece depth (multiple of 16)")
    parser.add_argument("--random", action="store_true", help="incompressible noise")
    parser.add_argument(
        "--server",
        choices=("process", "thread"),
        default="process",
        help="run the server as a child process (default) or in this process's threads",
    )
    args = parser.parse_args()
    shape = tuple(int(v) for v in args.shape.split(","))
    data = make_volume(shape, args.density, args.random)  # type: ignore[arg-type]
    mb = data.nbytes / 1e6
    box = Box.from_shape(shape)  # type: ignore[arg-type]
    frame = CoordinateFrame(box, (70.0, 100.0, 100.0), "nanometers", "bench_frame")
    print(f"volume {shape} uint8 = {mb:.1f} MB ({'noise' if args.random else 'sparse mask'})")
    print(f"cpus: {os.cpu_count()}, load average: {os.getloadavg()}")

    server_cls = BossServerProcess if args.server == "process" else LocalBossServer
    print(f"server: {server_cls.__name__} (waitress, 8 threads), data on {tempfile.gettempdir()}")
    with tempfile.TemporaryDirectory() as tmp, server_cls(tmp, TOKEN) as server:
        client = BossClient(
            server.host,
            "http",
            TOKEN,
            max_workers=args.workers,
            piece_shape=(args.piece_z, 512, 512),
        )
        client.ensure_experiment("bench", "exp", frame)
        push_s, pull_s = [], []
        for i in range(args.repeat):
            chan = f"ours{i}"
            client.ensure_channel("bench", "exp", chan, datatype="uint8", type="image")
            t0 = time.perf_counter()
            client.push("bench", "exp", chan, box, data)
            push_s.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            back = client.pull("bench", "exp", chan, box)
            pull_s.append(time.perf_counter() - t0)
            assert np.array_equal(back, data), "pull returned different data"

        remote = BossRemote({"protocol": "http", "host": server.host, "token": TOKEN})
        orig_runs = []
        for i in range(args.original_repeat):
            chan = f"original{i}"
            client.ensure_channel("bench", "exp", chan, datatype="uint8", type="image")
            t0 = time.perf_counter()
            original_push(remote, "bench", "exp", chan, data)
            orig_runs.append(time.perf_counter() - t0)
            assert np.array_equal(client.pull("bench", "exp", chan, box), data)
        client.close()

    push = statistics.median(push_s)
    pull = statistics.median(pull_s)
    print(f"push (BossClient, {args.workers} workers): median {push:.3f} s = {mb / push:.0f} MB/s"
          f"  runs {[round(s, 3) for s in push_s]}")  # fmt: skip
    print(f"pull (BossClient, {args.workers} workers): median {pull:.3f} s = {mb / pull:.0f} MB/s"
          f"  runs {[round(s, 3) for s in pull_s]}")  # fmt: skip
    orig_s = statistics.median(orig_runs)
    print(f"push (original nd_boss.boss_push loop): median {orig_s:.3f} s = {mb / orig_s:.0f} MB/s"
          f"  runs {[round(s, 3) for s in orig_runs]}")  # fmt: skip
    print(f"push speed-up vs original: {orig_s / push:.1f}x")


if __name__ == "__main__":
    main()
