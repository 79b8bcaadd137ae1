"""Publishes one notification to a user, as your backend would: ``POST /api/broadcast``.

    GOSSIPY_API_KEY=... python3 examples/notifications/publish.py 42 "Your order has shipped"
    python3 examples/notifications/publish.py --url http://localhost:4001 42 "..."

The standard library only, so that any backend can copy it. Every client that joined
``user:42``, on whichever node, gets a ``notification`` event with the payload
``{"message": ...}``. The key comes from the environment, never from the command line, which
other users of the machine can read in the process list.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.request

EVENT = "notification"


def publish(url: str, key: str, user_id: str, message: str) -> dict[str, object]:
    """The node's answer (``{"ok": true, "count": 1}``); HTTPError for a refusal."""
    body = json.dumps({"topic": f"user:{user_id}", "event": EVENT, "payload": {"message": message}}).encode()
    request = urllib.request.Request(f"{url.rstrip('/')}/api/broadcast", data=body, method="POST",
                                     headers={"Authorization": f"Bearer {key}",
                                              "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as answer:
        result: dict[str, object] = json.loads(answer.read())
        return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="http://localhost:4000", help="a node (default: %(default)s)")
    parser.add_argument("user_id")
    parser.add_argument("message")
    args = parser.parse_args()
    key = os.environ.get("GOSSIPY_API_KEY")
    if not key:
        print("publish.py: set GOSSIPY_API_KEY to the node's api key", file=sys.stderr)
        return 2
    try:
        print(json.dumps(publish(args.url, key, args.user_id, args.message)))
    except urllib.error.HTTPError as exc:
        print(f"publish.py: {args.url} refused: {exc.code} {exc.read().decode(errors='replace')}", file=sys.stderr)
        return 1
    except urllib.error.URLError as exc:
        print(f"publish.py: cannot reach {args.url}: {exc.reason}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
