"""Requests per second and latency percentiles of `POST /v1/predict` at 1, 4 and 8 concurrent clients.

    python benchmarks/api_load.py [--model fast] [--photo PHOTO | --generated] [--detector yunet|haar|none]
                                  [--requests 200] [--clients 1 4 8] [--memory ROUNDS]

Starts `ferlab api` in its own process on loopback, as a user does, and sends one
640x360 JPEG photo (../shared/data/wild/two_people.jpg cut to 16:9 and resized, two
faces; a generated image where that is missing) as the raw request body from N
concurrent clients (httpx, one connection each). The levels run one after the
other against the same server, after a warm-up; every answer must be 200.

With ``--memory ROUNDS`` it settles whether the server's memory grows instead: ROUNDS
rounds of --requests requests from the first --clients value, the server's resident
memory (VmRSS) before the first and after each, with each round's latency percentiles.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
PHOTO = SHARED / "data" / "wild" / "two_people.jpg"
YUNET = SHARED / "models" / "yunet" / "face_detection_yunet_2023mar.onnx"


def photo_640x360(path: Path | None) -> bytes:
    """`path` cut to 16:9 around its centre and resized to 640x360, as JPEG quality 90 (generated without one)."""
    if path is not None and path.is_file():
        image = Image.open(path).convert("RGB")
        width, height = image.size
        crop_height = min(height, width * 9 // 16)
        top = (height - crop_height) // 2
        image = image.crop((0, top, crop_height * 16 // 9, top + crop_height)).resize((640, 360), Image.Resampling.LANCZOS)
    else:
        coarse = np.random.default_rng(0).integers(0, 256, (18, 32, 3), dtype=np.uint8)
        image = Image.fromarray(coarse).resize((640, 360), Image.Resampling.BICUBIC)
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


async def _load(url: str, body: bytes, total: int, clients: int) -> tuple[np.ndarray, list[int], float]:
    """(latencies in ms, status codes, seconds) of `total` requests sent by `clients` concurrent clients."""
    latencies, codes = [], []
    queue = iter(range(total))
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=httpx.Limits(max_connections=clients)) as client:
        async def worker() -> None:
            for _ in queue:
                start = time.perf_counter()
                answer = await client.post("/v1/predict", content=body, headers={"Content-Type": "image/jpeg"})
                latencies.append((time.perf_counter() - start) * 1000)
                codes.append(answer.status_code)

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(clients)))
    return np.array(latencies), codes, time.perf_counter() - start


def _rss_mb(pid: int) -> float:
    """Resident memory of process `pid` in MB (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise SystemExit(f"no VmRSS for process {pid}")


def _memory_rounds(url: str, body: bytes, args: argparse.Namespace, pid: int) -> None:
    """Print the server's RSS before and after each of `args.memory` rounds, and each round's p50/p99."""
    clients = args.clients[0]
    print(f"\nmemory run: {args.memory} rounds of {args.requests} requests, {clients} clients, model {args.model}, "
          f"detector {args.detector}, {len(body):,}-byte 640x360 JPEG as the raw body\n")
    print(f"{'after':>10s} {'RSS MB':>7s} {'req/s':>7s} {'p50 ms':>7s} {'p99 ms':>7s} {'non-200':>7s}")
    print(f"{'start':>10s} {_rss_mb(pid):7.1f}")
    for round_ in range(1, args.memory + 1):
        latencies, codes, seconds = asyncio.run(_load(url, body, args.requests, clients))
        p50, p99 = np.percentile(latencies, [50, 99])
        bad = sum(code != 200 for code in codes)
        print(f"{round_ * args.requests:10,d} {_rss_mb(pid):7.1f} {args.requests / seconds:7.1f} {p50:7.1f} {p99:7.1f} "
              f"{bad:7d}")


def _serve(args: argparse.Namespace) -> tuple[subprocess.Popen, str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "ferlab.cli", "api", "--model", args.model, "--port", str(port),
               "--detector", args.detector]
    if args.detector == "yunet":
        command += ["--detector-model", str(YUNET)]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"ferlab api exited: {server.stderr.read()[-2000:]}")
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return server, url
        except httpx.TransportError:
            time.sleep(0.3)
    server.terminate()
    raise SystemExit("ferlab api did not answer within 180 s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="fast", help="bundled name, run folder or .onnx (default fast)")
    parser.add_argument("--photo", type=Path, default=PHOTO, help="photo to send (cut and resized to 640x360)")
    parser.add_argument("--generated", action="store_true", help="send the generated image, not --photo")
    parser.add_argument("--detector", choices=("yunet", "haar", "none"),
                        default="yunet" if YUNET.is_file() else "haar")
    parser.add_argument("--requests", type=int, default=200, help="requests per concurrency level")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4, 8])
    parser.add_argument("--memory", type=int, metavar="ROUNDS",
                        help="instead: ROUNDS rounds of --requests from the first --clients, server RSS after each")
    args = parser.parse_args()

    photo = None if args.generated else args.photo
    body = photo_640x360(photo)
    server, url = _serve(args)
    try:
        if args.memory:
            _memory_rounds(url, body, args, server.pid)
            return 0
        faces = len(httpx.post(f"{url}/v1/predict", content=body).json()["faces"])
        rows = []
        for clients in args.clients:
            asyncio.run(_load(url, body, 4 * clients, clients))  # warm-up: connections, threads, caches
            latencies, codes, seconds = asyncio.run(_load(url, body, args.requests, clients))
            bad = sum(code != 200 for code in codes)
            rows.append((clients, args.requests / seconds, *np.percentile(latencies, [50, 95, 99]), bad))
    finally:
        server.terminate()
        server.wait(30)

    source = photo.name if photo is not None and photo.is_file() else "generated image"
    print(f"\nPOST /v1/predict, one 640x360 JPEG ({source}, {len(body):,} bytes, {faces} faces found), "
          f"model {args.model}, detector {args.detector}, {args.requests} requests per level, "
          f"{os.cpu_count()} CPU cores\n")
    print(f"{'clients':>7s} {'req/s':>7s} {'p50 ms':>7s} {'p95 ms':>7s} {'p99 ms':>7s} {'non-200':>7s}")
    for clients, rate, p50, p95, p99, bad in rows:
        print(f"{clients:7d} {rate:7.1f} {p50:7.1f} {p95:7.1f} {p99:7.1f} {bad:7d}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
