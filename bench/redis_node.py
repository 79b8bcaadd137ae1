"""A gossipy node scaled out the Redis way: the same Server, its pubsub adapter replaced by
``RedisAdapter``. Run by the benchmark as

    PYTHONPATH=<source root> python bench/redis_node.py --config node.yml --redis 127.0.0.1:6379

and stopped by SIGTERM/SIGINT, like ``python -m server``.
"""

from __future__ import annotations

import argparse
import logging
import sys

import uvloop

from server import settings as settings_module
from server.app import Server, serve

from redis_adapter import attach  # a sibling of this file (bench/ is sys.path[0] when run)


async def main(config: str | None, redis_address: str) -> int:
    settings = settings_module.load(config)
    if settings.distribution.node is not None:
        sys.stderr.write("redis_node: the Redis way runs undistributed nodes (no node name)\n")
        return 2
    host, _, port = redis_address.rpartition(":")
    server = Server(settings)
    adapter = attach(server.pubsub, host, int(port))
    await adapter.start()
    try:
        return await serve(server)
    finally:
        await adapter.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config")
    parser.add_argument("--redis", required=True, help="HOST:PORT of the Redis server")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # The same event loop as a gossipy node (server/__main__.py), so the comparison is of the two designs.
    sys.exit(uvloop.run(main(args.config, args.redis)))
