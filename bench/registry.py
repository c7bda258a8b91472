"""Registry transfer throughput against `cp` of the same bytes on the same disk.

Starts a real registry process, then for each chunk size uploads a ~512 MiB file over
loopback gRPC (client-side hashing timed separately), downloads it (with sha256
verification), and re-uploads it to a new version (content known: no bytes should move).
The anchor is `cp` of the same file on the same disk, run in the same process run.

Usage: .venv/bin/python bench/registry.py [--mib 512] [--chunks 262144,1048576,4194304]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from forgeline.client.cache import VersionCache  # noqa: E402
from forgeline.client.channel import ChannelOptions  # noqa: E402
from forgeline.client.manifests import sha256_file  # noqa: E402
from forgeline.client.registry import RegistryClient  # noqa: E402
from forgeline.client.transfer import upload_file  # noqa: E402
from forgeline.v1 import registry_pb2  # noqa: E402
from tests.helpers import start_service  # noqa: E402


def timed(fn) -> tuple[float, object]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def cp_seconds(src: Path, work: Path, repeats: int = 3) -> float:
    runs = []
    for i in range(repeats):
        dst = work / f"cp-{i}.bin"
        seconds, _ = timed(lambda dst=dst: subprocess.run(["cp", str(src), str(dst)], check=True))
        runs.append(seconds)
        dst.unlink()
    return statistics.median(runs)


def bench_chunk(src: Path, work: Path, chunk: int, digest: tuple[str, int]) -> dict:
    home = work / f"home-{chunk}"
    env = {**os.environ, "FORGELINE_HOME": str(home), "FORGELINE_CHUNK_BYTES": str(chunk)}
    proc = start_service("registry", env)
    port = proc.port
    try:
        registry = RegistryClient(f"127.0.0.1:{port}", ChannelOptions(retries=False))

        def new_version() -> int:
            version = registry.create_version(
                "bench", registry_pb2.VERSION_KIND_BASE, create_model=True
            )
            return version.number

        def commit(number: int) -> None:
            registry.commit_version("bench", number)

        v1 = new_version()
        up_s, (_, sent) = timed(
            lambda: upload_file(
                registry, "bench", v1, "w.bin", src, digest=digest, chunk_bytes=chunk
            )
        )
        commit(v1)
        down_s, _ = timed(
            lambda: VersionCache(registry, work / f"pull-{chunk}").pull(f"bench:{v1}")
        )
        v2 = new_version()
        dedupe_s, (_, resent) = timed(
            lambda: upload_file(registry, "bench", v2, "w.bin", src, digest=digest)
        )
        commit(v2)
        registry.close()
        return {
            "chunk_bytes": chunk,
            "upload_seconds": up_s,
            "upload_bytes_sent": sent,
            "download_seconds": down_s,
            "reupload_seconds": dedupe_s,
            "reupload_bytes_sent": resent,
        }
    finally:
        proc.kill()
        shutil.rmtree(home, ignore_errors=True)
        shutil.rmtree(work / f"pull-{chunk}", ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=512)
    parser.add_argument("--chunks", default="65536,262144,1048576,4194304")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="forgeline-bench-", dir=ROOT / "bench"))
    try:
        src = work / "src.bin"
        with open(src, "wb") as f:
            for _ in range(args.mib):
                f.write(os.urandom(1024 * 1024))
        size = src.stat().st_size
        hash_s, digest = timed(lambda: sha256_file(src))
        cp_s = cp_seconds(src, work)
        rows = [bench_chunk(src, work, int(c), digest) for c in args.chunks.split(",")]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    mib = size / 2**20
    result = {
        "file_mib": mib,
        "cp_seconds": cp_s,
        "cp_mib_per_s": mib / cp_s,
        "client_sha256_seconds": hash_s,
        "runs": [
            {
                **r,
                "upload_mib_per_s": mib / r["upload_seconds"],
                "download_mib_per_s": mib / r["download_seconds"],
                "upload_vs_cp": cp_s / r["upload_seconds"],
                "download_vs_cp": cp_s / r["download_seconds"],
            }
            for r in rows
        ],
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "registry.json").write_text(json.dumps(result, indent=2))
    lines = [
        f"# Registry transfers: {mib:.0f} MiB over loopback gRPC vs `cp` on the same disk",
        "",
        f"Anchor `cp`: {cp_s:.2f} s ({mib / cp_s:.0f} MiB/s). Client sha256 before upload: "
        f"{hash_s:.2f} s (not in the upload figures). Target: >= 0.5x of `cp`.",
        "",
        "| chunk | upload MiB/s | upload vs cp | download MiB/s (verified) | download vs cp "
        "| re-upload s | re-upload bytes |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in result["runs"]:
        lines.append(
            f"| {r['chunk_bytes'] // 1024} KiB | {r['upload_mib_per_s']:.0f} | "
            f"{r['upload_vs_cp']:.2f}x | {r['download_mib_per_s']:.0f} | "
            f"{r['download_vs_cp']:.2f}x | {r['reupload_seconds']:.3f} | "
            f"{r['reupload_bytes_sent']} |"
        )
    (args.out / "registry.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
