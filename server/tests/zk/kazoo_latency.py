"""Rough latency/throughput of the ZooKeeper port with kazoo (not a benchmark harness: one
client, loopback, whatever else the machine runs). Usage (CONCLAVE_ZK_HOSTS as run_kazoo.sh
sets it, e.g. from `server/tests/zk/run_kazoo.sh` logs or a cluster you started):
    target/kazoo-venv/bin/python server/tests/zk/kazoo_latency.py 127.0.0.1:2181,...
Prints ops/s and mean latency for sequential create, setData, getData, getData after sync,
and pipelined (async) setData.
"""
import sys
import time
import uuid

from kazoo.client import KazooClient

N = 500


def timed(name, fn, n=N):
    start = time.perf_counter()
    for i in range(n):
        fn(i)
    took = time.perf_counter() - start
    print(f"{name:28s} {n / took:8.0f} ops/s  {took / n * 1000:6.2f} ms/op")


def main(hosts):
    zk = KazooClient(hosts=hosts.split(",")[0], timeout=10)
    zk.start()
    base = "/latency-" + uuid.uuid4().hex[:8]
    zk.create(base)
    timed("create (sequential)", lambda i: zk.create(f"{base}/n{i}", b"x"))
    timed("setData (sequential)", lambda i: zk.set(f"{base}/n{i}", b"y"))
    timed("getData (local)", lambda i: zk.get(f"{base}/n{i}"))
    timed("sync + getData", lambda i: (zk.sync(base), zk.get(f"{base}/n{i}")))
    start = time.perf_counter()
    pending = [zk.set_async(f"{base}/n{i}", b"z") for i in range(N)]
    for p in pending:
        p.get(timeout=30)
    took = time.perf_counter() - start
    print(f"{'setData (pipelined)':28s} {N / took:8.0f} ops/s")
    zk.delete(base, recursive=True)
    zk.stop()


if __name__ == "__main__":
    main(sys.argv[1])
