"""The seed document's replay, as written there, for the benchmark's baseline.

`/work/shared/seed/event-sourcing-with-streams.md` (and the project README's "seed")
replays an aggregate with redis-py: one `XRANGE key - +`, a dict per entry with its
`data` run through `json.loads`, and a dict of handler functions that each build a new
state dict. This file is that code, unchanged but for where the stream key comes from
(the benchmark reads the very stream Streamfold replays, so it passes the key in).

Two ways to run it:

    python seed_reference.py replay --url redis://127.0.0.1:6379/0 --key KEY [--runs 3]
        times `replay_to_state` on one stream and prints one JSON line

    python seed_reference.py serve --url redis://127.0.0.1:6379/0
        the benchmark's mode: prints a hello line (versions), then answers one JSON
        request per stdin line with one JSON line, so that the Rust driver can
        alternate Python runs with its own in the same process lifetime

Timing is done here, with time.perf_counter() around the seed's function only
(process start-up and imports are not counted).
"""

import argparse
import http.client
import json
import sys
import time

import redis
from redis._parsers import _RESP2Parser, _RESP3Parser

try:
    import hiredis  # noqa: F401  (redis-py uses it by default when it is installed)

    HIREDIS = getattr(hiredis, "__version__", "yes")
except ImportError:  # pragma: no cover - the benchmark's venv installs it
    HIREDIS = None


# ---- the seed document's code -------------------------------------------------------


class EventStore:
    def __init__(self, redis_client, stream_key):
        self.r = redis_client
        # The seed builds f"events:{aggregate_type}:{aggregate_id}"; the benchmark
        # points it at the stream Streamfold wrote instead.
        self.stream_key = stream_key

    def get_events(self, aggregate_type, aggregate_id, after_id=None):
        """Get all events for an aggregate"""
        stream_key = self.stream_key(aggregate_type, aggregate_id)
        start = after_id or "-"

        events = self.r.xrange(stream_key, start, "+")
        return [{"id": e[0], **e[1], "data": json.loads(e[1]["data"])} for e in events]

    def replay_to_state(self, aggregate_type, aggregate_id, handlers):
        """Rebuild current state by replaying events"""
        events = self.get_events(aggregate_type, aggregate_id)
        state = {}

        for event in events:
            event_type = event["event_type"]
            if event_type in handlers:
                state = handlers[event_type](state, event["data"])

        return state


# Event handlers for rebuilding state
user_handlers = {
    "UserCreated": lambda state, data: {
        **state,
        "id": data["id"],
        "name": data["name"],
        "email": data["email"],
        "created_at": data["timestamp"],
    },
    "EmailChanged": lambda state, data: {
        **state,
        "email": data["email"],
        "email_updated_at": data["timestamp"],
    },
    "NameChanged": lambda state, data: {**state, "name": data["name"]},
}


def load_with_snapshot(r, event_store, snapshot_key, aggregate_type, aggregate_id, handlers):
    # The seed's version, with `snapshot_key` passed in instead of built.
    snapshot = r.hgetall(snapshot_key)

    if snapshot:
        state = json.loads(snapshot["state"])
        after_id = snapshot["version_id"]
    else:
        state = {}
        after_id = None

    # Apply events after snapshot
    events = event_store.get_events(aggregate_type, aggregate_id, after_id)
    for event in events:
        handler = handlers.get(event["event_type"])
        if handler:
            state = handler(state, event["data"])

    return state


# ---- the benchmark's driver ---------------------------------------------------------


def client(url, parser):
    """A redis-py client as the seed makes one (decode_responses, since the seed
    indexes entries by str keys): with redis-py's default parser (hiredis when it is
    installed) or its pure-Python one."""
    if parser == "python":
        protocol = int(redis.utils.DEFAULT_RESP_VERSION)
        parser_class = _RESP3Parser if protocol == 3 else _RESP2Parser
        return redis.Redis.from_url(url, decode_responses=True, parser_class=parser_class)
    return redis.Redis.from_url(url, decode_responses=True)


def hello():
    return {
        "python": sys.version.split()[0],
        "redis_py": redis.__version__,
        "hiredis": HIREDIS,
        "resp": int(redis.utils.DEFAULT_RESP_VERSION),
    }


def http_many(request):
    """The same states through a Streamfold server, as a Python service would read
    them: one keep-alive `http.client` connection, `GET` each path, `json.loads`
    each body (the state), every answer checked to be a 200."""
    conn = http.client.HTTPConnection(request["host"], request["port"])
    paths = request["paths"]
    t = time.perf_counter()
    for path in paths:
        conn.request("GET", path)
        resp = conn.getresponse()
        body = resp.read()
        if resp.status != 200:
            raise RuntimeError(f"GET {path}: {resp.status} {body[:200]!r}")
        json.loads(body)
    seconds = time.perf_counter() - t
    conn.close()
    return {"seconds": seconds}


def run(clients, request):
    if request["op"] == "http_many":
        return http_many(request)
    r = clients[request.get("parser", "default")]
    if request["op"] == "replay_many":
        # The seed's loop over many small aggregates, one after another.
        keys = request["keys"]
        stores = [EventStore(r, lambda _t, _i, k=k: k) for k in keys]
        t = time.perf_counter()
        for store in stores:
            store.replay_to_state("user", "bench", user_handlers)
        return {"seconds": time.perf_counter() - t}
    key = request["key"]
    store = EventStore(r, lambda _t, _i: key)
    if request["op"] == "replay":
        t = time.perf_counter()
        state = store.replay_to_state("user", "bench", user_handlers)
        seconds = time.perf_counter() - t
    elif request["op"] == "replay_snapshot":
        t = time.perf_counter()
        state = load_with_snapshot(
            r, store, request["snapshot_key"], "user", "bench", user_handlers
        )
        seconds = time.perf_counter() - t
    else:
        raise ValueError(f"unknown op {request['op']!r}")
    return {"seconds": seconds, "state": json.dumps(state, separators=(",", ":"), ensure_ascii=False)}


def serve(url):
    clients = {"default": client(url, "default"), "python": client(url, "python")}
    print(json.dumps(hello()), flush=True)
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        try:
            reply = run(clients, json.loads(line))
        except Exception as e:  # report, keep serving
            reply = {"error": f"{type(e).__name__}: {e}"}
        print(json.dumps(reply), flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve")
    s.add_argument("--url", required=True)
    r = sub.add_parser("replay")
    r.add_argument("--url", required=True)
    r.add_argument("--key", required=True)
    r.add_argument("--runs", type=int, default=3)
    r.add_argument("--parser", choices=["default", "python"], default="default")
    args = ap.parse_args()
    if args.cmd == "serve":
        serve(args.url)
        return
    clients = {args.parser: client(args.url, args.parser)}
    times = []
    for _ in range(args.runs):
        reply = run(clients, {"op": "replay", "key": args.key, "parser": args.parser})
        times.append(reply["seconds"])
    print(json.dumps({**hello(), "parser": args.parser, "seconds": times, "state": reply["state"]}))


if __name__ == "__main__":
    main()
