#!/usr/bin/env bash
# Rough single-client figures of the ZooKeeper port (kazoo_latency.py) on a fresh 3-member
# cluster; the client talks to member 1. Needs the venv run_kazoo.sh creates.
source "$(dirname "$0")/cluster.sh"
"$target/kazoo-venv/bin/python" "$here/kazoo_latency.py" "$hosts"
