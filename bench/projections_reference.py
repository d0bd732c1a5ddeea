"""A hand-written redis-py read model in the seed's style: the baseline of the
benchmark's projections section (issue 20).

This is what a team writes without Streamfold's projections, in the style of the
seed document's code (one redis-py client, one command at a time, no pipelining,
`json.loads`/`json.dumps` of every value): a loop that reads the `user` category
with

    XREAD COUNT 1000 STREAMS p0 p1 ... pos0 pos1 ...

and, for each event, keeps the same documents as the `email-domains` projection
(plugins/email-domains/README.md) with GET / SET / DEL on Redis keys of its own:

    <prefix>user/<id>        {"domain": "example.com"}
    <prefix>domain/<domain>  {"domain": "example.com", "users": 2, "user_ids": ["u1", "u2"]}

(a domain left with no users is deleted; `user_ids` sorted as strings), then stores
its position (`SET <prefix>pos`, the stream ids as JSON) after each page.

    python projections_reference.py serve --url redis://127.0.0.1:6379/0

prints a hello line (versions), then answers one JSON request per stdin line with
one JSON line:

    {"op": "clear", "prefix": "bench-proj-ref:"}
    -> {"deleted": ...}     every key under the prefix deleted (before a fresh build)
    {"op": "build", "keys": [...], "prefix": "bench-proj-ref:", "total": 20000}
    -> {"seconds": ..., "events": ..., "reads": ..., "cpu_seconds": ...}

A build starts from position 0 (and expects the keys cleared first). The clock (time.perf_counter()) runs from the first XREAD until the position
after the page that completes `total` events is stored; process start-up, imports
and connecting are not counted.
"""

import argparse
import bisect
import json
import resource
import sys
import time

import redis

try:
    import hiredis  # noqa: F401  (redis-py uses it by default when it is installed)

    HIREDIS = getattr(hiredis, "__version__", "yes")
except ImportError:  # pragma: no cover - the benchmark's venv installs it
    HIREDIS = None

HANDLES = ("UserCreated", "EmailChanged")


def cpu_now():
    u = resource.getrusage(resource.RUSAGE_SELF)
    return u.ru_utime + u.ru_stime


def domain_of(email):
    """The lowercased part of `email` after its last `@` (the projection's rule)."""
    _, at, domain = email.rpartition("@")
    if not at or not domain or any(c.isspace() for c in domain):
        raise ValueError(f"email {email!r} has no domain after an @")
    return domain.lower()


# ---- the hand-written read model ----------------------------------------------------


def apply(r, prefix, aggregate_id, data):
    """One event: the same documents as the email-domains projection."""
    domain = domain_of(json.loads(data)["email"])
    user_key = prefix + "user/" + aggregate_id
    raw = r.get(user_key)
    old = json.loads(raw)["domain"] if raw is not None else None
    if old == domain:
        return
    if old is not None:
        key = prefix + "domain/" + old
        raw = r.get(key)
        if raw is not None:
            d = json.loads(raw)
            ids = [u for u in d["user_ids"] if u != aggregate_id]
            if ids:
                r.set(key, json.dumps({"domain": old, "users": len(ids), "user_ids": ids}))
            else:
                r.delete(key)
    key = prefix + "domain/" + domain
    raw = r.get(key)
    ids = json.loads(raw)["user_ids"] if raw is not None else []
    at = bisect.bisect_left(ids, aggregate_id)
    if at == len(ids) or ids[at] != aggregate_id:
        ids.insert(at, aggregate_id)
    r.set(key, json.dumps({"domain": domain, "users": len(ids), "user_ids": ids}))
    r.set(user_key, json.dumps({"domain": domain}))


def build(r, keys, prefix, total):
    """Reads the category from position 0 until `total` events are folded."""
    positions = {k: "0-0" for k in keys}
    events = reads = 0
    while events < total:
        reply = r.xread(positions, count=1000, block=1000)
        if not reply:
            raise RuntimeError(f"the category ended after {events} of {total} events")
        reads += 1
        for key, entries in reply:
            for entry_id, fields in entries:
                if fields["event_type"] in HANDLES:
                    apply(r, prefix, fields["aggregate_id"], fields["data"])
                events += 1
                positions[key] = entry_id
        r.set(prefix + "pos", json.dumps(positions))
    return events, reads


# ---- the benchmark's driver ---------------------------------------------------------


def hello():
    return {
        "python": sys.version.split()[0],
        "redis_py": redis.__version__,
        "hiredis": HIREDIS,
        "resp": int(redis.utils.DEFAULT_RESP_VERSION),
    }


def clear(r, prefix):
    deleted = 0
    batch = []
    for k in r.scan_iter(match=prefix + "*", count=1000):
        batch.append(k)
        if len(batch) >= 1000:
            deleted += r.unlink(*batch)
            batch = []
    if batch:
        deleted += r.unlink(*batch)
    return deleted


def run(r, request):
    prefix = request["prefix"]
    if request.get("op") == "clear":
        return {"deleted": clear(r, prefix)}
    if request.get("op") != "build":
        raise ValueError(f"unknown op {request.get('op')!r}")
    cpu0 = cpu_now()
    t = time.perf_counter()
    events, reads = build(r, request["keys"], prefix, int(request["total"]))
    seconds = time.perf_counter() - t
    return {
        "seconds": seconds,
        "events": events,
        "reads": reads,
        "cpu_seconds": cpu_now() - cpu0,
    }


def serve(url):
    # decode_responses, as the seed's client (it indexes entries by str keys).
    r = redis.Redis.from_url(url, decode_responses=True)
    r.ping()
    print(json.dumps(hello()), flush=True)
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        try:
            reply = run(r, json.loads(line))
        except Exception as e:  # report, keep serving
            reply = {"error": f"{type(e).__name__}: {e}"}
        print(json.dumps(reply), flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve")
    s.add_argument("--url", required=True)
    args = ap.parse_args()
    serve(args.url)


if __name__ == "__main__":
    main()
