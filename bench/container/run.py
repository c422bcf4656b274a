#!/usr/bin/env python3
"""Container start to first answer: `docker run -d` of the downloader image until its job API
answers GET /health over TLS, beside the same for the test nginx image (Debian's nginx FROM
scratch, built by tests/docker/nginx-image) answering its TLS port, interleaved round after
round in one run (this machine is noisy: compare the medians of the same run). Also prints the
image sizes. Needs the images: scripts/image and tests/docker/nginx-image.

    python3 bench/container/run.py [ROUNDS]
"""

import os
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests" / "docker"))
from support import upstream_dir  # noqa: E402

ROUNDS = int(sys.argv[1]) if len(sys.argv) > 1 else 15
CONTEXT = ssl.create_default_context()
CONTEXT.check_hostname = False
CONTEXT.verify_mode = ssl.CERT_NONE


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def answered(port, request):
    """True once a TLS connection to the port gets an HTTP status line back."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as raw:
            with CONTEXT.wrap_socket(raw, server_hostname="localhost") as tls:
                tls.sendall(request)
                return tls.recv(16).startswith(b"HTTP/1.1 ")
    except (OSError, ssl.SSLError):
        return False


def start(args, port, request):
    """Seconds from `docker run -d` to the first answer."""
    began = time.monotonic()
    name = subprocess.run(["docker", "run", "-d", "--rm", *args], check=True,
                          capture_output=True, text=True).stdout.strip()
    try:
        while not answered(port, request):
            if time.monotonic() - began > 30:
                raise SystemExit(f"no answer within 30 s from {args}")
            time.sleep(0.005)
        return time.monotonic() - began
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True)


def size(image):
    out = subprocess.run(["docker", "image", "inspect", "-f", "{{.Size}}", image],
                         check=True, capture_output=True, text=True).stdout
    return int(out) / 1e6


def main():
    with tempfile.TemporaryDirectory() as tmp:
        upstream = upstream_dir(tmp)
        health = b"GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
        times = {"downloader": [], "nginx": []}
        for _ in range(ROUNDS):
            port = free_port()
            times["downloader"].append(start(
                ["-p", f"127.0.0.1:{port}:8819", "--read-only", "--tmpfs", "/data:uid=65532",
                 "downloader:latest"], port, health))
            port = free_port()
            times["nginx"].append(start(
                ["-p", f"127.0.0.1:{port}:8443", "-v", f"{upstream}:/etc/upstream:ro",
                 "downloader-test-nginx:latest"], port, health))
        for name, image in (("downloader", "downloader:latest"),
                            ("nginx", "downloader-test-nginx:latest")):
            values = sorted(times[name])
            print(f"{name:10} image {size(image):5.1f} MB  run -d → first answer: median "
                  f"{statistics.median(values) * 1000:6.0f} ms  (min {values[0] * 1000:.0f}, "
                  f"max {values[-1] * 1000:.0f}, {len(values)} rounds)")
        ratio = statistics.median(
            d / n for d, n in zip(times["downloader"], times["nginx"]))
        print(f"median per-round ratio downloader/nginx: {ratio:.2f}")


if __name__ == "__main__":
    os.environ.setdefault("DOCKER_BUILDKIT", "0")
    main()
