"""Make sure the Docker base image exists locally, building it offline when it can't be pulled.

No container registry is reachable from these machines, so ``debian:bookworm-slim`` is made
from Debian packages, with the machine's own apt sources, the first time it is needed:

    mmdebstrap --variant=minbase bookworm - | docker import - debian:bookworm-slim

(about 30 s; ``apt-get install mmdebstrap`` first). Then it is reused. It runs as
``python3 tests/support/baseimage.py [IMAGE]`` (from .ci/run) and as :func:`ensure_base_image`
(from the e2e harness). Standard library plus the Docker SDK only.
"""

from __future__ import annotations

import argparse
import fcntl
import os
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Callable

import docker
from docker.errors import APIError, DockerException, ImageNotFound

DEFAULT_IMAGE = "debian:bookworm-slim"
# The Debian release of the base image: the build machine's, which ``include_python`` needs.
SUITE = "bookworm"
LOCK_PATH = os.path.join(tempfile.gettempdir(), "gossipy-baseimage.lock")

Log = Callable[[str], None]


def _log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] baseimage: {message}", flush=True)


def ensure_base_image(
    client: docker.DockerClient | None = None,
    image: str = DEFAULT_IMAGE,
    log: Log = _log,
) -> str:
    """Return the id of ``image``, pulling it, or else building it with mmdebstrap, if missing.

    Holds a file lock while it works, so two callers at once build it only once.
    """
    client = client or docker.from_env()
    found = _get(client, image)
    if found:
        log(f"{image} present ({found})")
        return found
    with open(LOCK_PATH, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        found = _get(client, image)  # another process may have made it meanwhile
        if found:
            log(f"{image} present ({found})")
            return found
        repository, _, tag = image.partition(":")
        log(f"{image} missing; trying to pull it")
        try:
            pulled = client.images.pull(repository, tag=tag or "latest")
            log(f"pulled {image} ({pulled.short_id})")
            return pulled.id
        except (APIError, DockerException) as error:
            log(f"pull failed ({_first_line(error)}); building it locally with mmdebstrap")
        return _build_with_mmdebstrap(client, repository, tag or "latest", log)


def _build_with_mmdebstrap(
    client: docker.DockerClient, repository: str, tag: str, log: Log
) -> str:
    if shutil.which("mmdebstrap") is None:
        raise RuntimeError(
            "mmdebstrap not found: install it (apt-get install mmdebstrap) or run .ci/setup-machine"
        )
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="gossipy-rootfs-") as tmp:
        rootfs = os.path.join(tmp, "rootfs.tar")
        command = ["mmdebstrap", "--variant=minbase", "--quiet", SUITE, rootfs]
        log("running " + " ".join(command))
        result = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if result.returncode != 0:
            raise RuntimeError(
                f"mmdebstrap exited with {result.returncode}:\n{result.stdout[-4000:]}"
            )
        size_mb = os.path.getsize(rootfs) / 1e6
        log(f"rootfs {size_mb:.0f} MB in {time.monotonic() - started:.0f} s; importing it as {repository}:{tag}")
        # Streams the file; CMD as in Debian's official image.
        client.api.import_image_from_file(
            rootfs, repository=repository, tag=tag, changes=['CMD ["bash"]']
        )
    image_id = _get(client, f"{repository}:{tag}")
    if not image_id:
        raise RuntimeError(f"docker import did not create {repository}:{tag}")
    log(f"built {repository}:{tag} ({image_id}) in {time.monotonic() - started:.0f} s")
    return image_id


def _get(client: docker.DockerClient, image: str) -> str | None:
    try:
        return client.images.get(image).short_id
    except ImageNotFound:
        return None


def _first_line(error: Exception) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("image", nargs="?", default=DEFAULT_IMAGE, help=f"default: {DEFAULT_IMAGE}")
    args = parser.parse_args(argv)
    try:
        ensure_base_image(image=args.image)
    except (DockerException, RuntimeError) as error:
        print(f"baseimage: ERROR: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
