"""Hand-written redis-py workers on a Redis consumer group: the baseline of the
benchmark's durable subscriptions section (issue 21).

This is what a team writes without Streamfold: a consumer group on every category
partition stream of a type (`XGROUP CREATE key group 0`), and worker processes that
each loop over

    XREADGROUP GROUP group worker COUNT 100 BLOCK 200 STREAMS p0 p1 ... > > ...
    XACK p group id ...            (one per partition that gave entries)

until every entry is acknowledged. It keeps no order per aggregate (two workers may
hold two events of one aggregate at once), parks nothing, and redelivers nothing.
Each worker is a process of its own (forked, one redis-py client with hiredis each),
as one would deploy them: Python threads would share one interpreter lock.

    python groups_reference.py serve --url redis://127.0.0.1:6379/0

prints a hello line (versions), then answers one JSON request per stdin line with one
JSON line:

    {"op": "consume", "keys": [...], "group": "g", "workers": 8, "count": 100,
     "block_ms": 200, "total": 20000}
    -> {"seconds": ..., "acked": ..., "read": ..., "reads": ..., "cpu_seconds": ...}

The group is created on every key before the clock starts and destroyed after. The
clock (time.perf_counter(), CLOCK_MONOTONIC, the same in every process) starts when
every worker is connected and released, and stops when the acknowledgement that
brings the total to `total` returns; process start-up, connecting and the workers'
last empty BLOCK are not counted.
"""

import argparse
import json
import multiprocessing
import resource
import sys
import time

import redis

try:
    import hiredis  # noqa: F401  (redis-py uses it by default when it is installed)

    HIREDIS = getattr(hiredis, "__version__", "yes")
except ImportError:  # pragma: no cover - the benchmark's venv installs it
    HIREDIS = None


def cpu_now():
    u = resource.getrusage(resource.RUSAGE_SELF)
    return u.ru_utime + u.ru_stime


# ---- the hand-written worker --------------------------------------------------------


def worker(url, keys, group, name, count, block_ms, total, shared, ready, go):
    acked, end, read, reads, cpu = shared
    r = redis.Redis.from_url(url)
    r.ping()
    streams = {k: ">" for k in keys}
    ready.wait()
    go.wait()
    cpu0 = cpu_now()
    my_read = my_reads = 0
    while acked.value < total:
        reply = r.xreadgroup(group, name, streams, count=count, block=block_ms)
        if not reply:
            continue
        my_reads += 1
        done = 0
        for key, entries in reply:
            if not entries:
                continue
            my_read += len(entries)
            # The work would be here.
            done += r.xack(key, group, *[entry_id for entry_id, _fields in entries])
        with acked.get_lock():
            acked.value += done
            if acked.value >= total and end.value == 0.0:
                end.value = time.perf_counter()
    with read.get_lock():
        read.value += my_read
        reads.value += my_reads
        cpu.value += cpu_now() - cpu0


# ---- the benchmark's driver ---------------------------------------------------------


def hello():
    return {
        "python": sys.version.split()[0],
        "redis_py": redis.__version__,
        "hiredis": HIREDIS,
        "resp": int(redis.utils.DEFAULT_RESP_VERSION),
        "workers": "processes (fork), one redis-py client each",
    }


def consume(url, request):
    keys = request["keys"]
    group = request["group"]
    n = int(request["workers"])
    count = int(request.get("count", 100))
    block_ms = int(request.get("block_ms", 200))
    total = int(request["total"])
    admin = redis.Redis.from_url(url)
    for k in keys:
        admin.xgroup_create(k, group, id="0")
    ctx = multiprocessing.get_context("fork")
    shared = (
        ctx.Value("q", 0),
        ctx.Value("d", 0.0),
        ctx.Value("q", 0),
        ctx.Value("q", 0),
        ctx.Value("d", 0.0),
    )
    ready = ctx.Barrier(n + 1)
    go = ctx.Event()
    procs = [
        ctx.Process(
            target=worker,
            args=(url, keys, group, f"w{i}", count, block_ms, total, shared, ready, go),
            daemon=True,
        )
        for i in range(n)
    ]
    for p in procs:
        p.start()
    try:
        ready.wait(timeout=60)
        t = time.perf_counter()
        go.set()
        for p in procs:
            p.join()
    finally:
        for p in procs:
            if p.is_alive():
                p.kill()
        for k in keys:
            admin.xgroup_destroy(k, group)
        admin.close()
    failed = [p.exitcode for p in procs if p.exitcode != 0]
    if failed:
        raise RuntimeError(f"worker processes failed with exit codes {failed}")
    acked, end, read, reads, cpu = shared
    return {
        "seconds": end.value - t,
        "acked": acked.value,
        "read": read.value,
        "reads": reads.value,
        "cpu_seconds": cpu.value,
    }


def serve(url):
    print(json.dumps(hello()), flush=True)
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        try:
            request = json.loads(line)
            if request.get("op") != "consume":
                raise ValueError(f"unknown op {request.get('op')!r}")
            reply = consume(url, request)
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
