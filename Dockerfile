# The gossipy node image, as in the article: the release tarball unpacked under /www/gossipy.
# Build the release first: python build.py release --env=prod
# The base must be the build machine's OS (include_python bundles the build machine's Python);
# with no registry reachable, make it with: python3 tests/support/baseimage.py
ARG BASE_IMAGE=debian:bookworm-slim
FROM ${BASE_IMAGE}

# The runtime's one system library: Python's ssl module (imported by Tornado) needs libssl3,
# which the minbase image lacks (the article's image needed libssl for crypto too).
RUN apt-get update \
    && apt-get install -y --no-install-recommends libssl3 \
    && rm -rf /var/lib/apt/lists/*

EXPOSE 4000
ENV PORT=4000
# ADD unpacks a local tar.gz into the folder. build.py writes the tarball here too, under a path
# without the version, so a version bump in pyproject.toml needs no change in this file.
ADD _build/prod/rel/gossipy/gossipy.tar.gz /www/gossipy
WORKDIR /www/gossipy
# Run the release once: it unpacks its PEX into RELEASE_TMP (/tmp/gossipy) now rather than at
# every container's first boot (~1-2 s saved), and a release that cannot run on this base
# image fails the build here instead of at `up`.
RUN ./bin/gossipy describe > /dev/null
# Healthy = serving clients (GET /readyz): not while boot sync waits for the other nodes, nor
# while draining after SIGTERM. Asked with bash alone (the image has no curl): it needs none of
# the node's settings, so it also answers where RELEASE_NODE is only set in the entrypoint's
# shell (docker-compose.scale.yml, docker-stack.yml), and it costs next to nothing, where
# `bin/gossipy ready` starts a Python; orchestrators may probe as often as they like.
HEALTHCHECK --interval=5s --timeout=3s --retries=3 --start-period=15s \
    CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/${PORT:-4000} && printf 'GET /readyz HTTP/1.0\\r\\n\\r\\n' >&3 && read -r status <&3 && [[ $status == *' 200 '* ]]"]
# Exec form: bin/gossipy is PID 1 and gets docker's signals itself.
ENTRYPOINT ["./bin/gossipy", "foreground"]
