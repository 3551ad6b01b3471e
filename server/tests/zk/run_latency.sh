#!/usr/bin/env bash
# Rough single-client figures of the ZooKeeper port (kazoo_latency.py) on a fresh 3-member
# cluster, through the leader and through a follower. Needs the venv run_kazoo.sh creates.
source "$(dirname "$0")/cluster.sh"
l=$(leader)
f=$(( l % 3 + 1 ))
echo "== through the leader (member $l)"
"$target/kazoo-venv/bin/python" "$here/kazoo_latency.py" "127.0.0.1:${zk[$l]}"
echo "== through a follower (member $f)"
"$target/kazoo-venv/bin/python" "$here/kazoo_latency.py" "127.0.0.1:${zk[$f]}"
