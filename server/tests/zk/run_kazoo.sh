#!/usr/bin/env bash
# Runs kazoo's own test suite (PyPI kazoo==2.11.0) against a real 3-member Conclave cluster
# through its ZooKeeper port. Needs: python3 with venv (Debian: python3-venv), a built
# `conclave` binary (cargo build -p conclave-server), network access to PyPI once.
#   server/tests/zk/run_kazoo.sh [pytest args...]     e.g. -k test_client
# Member logs are kept in target/zk-logs/. Prints pytest's pass/skip/fail summary (skips carry their reason); exit status is pytest's.
source "$(dirname "$0")/cluster.sh"
python3 -c 'import venv' 2>/dev/null || { echo "python3 venv missing: apt-get install python3-venv" >&2; exit 2; }
venv="$target/kazoo-venv"
if [ ! -x "$venv/bin/pytest" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q kazoo==2.11.0 pytest==8.3.4 pytest-timeout==2.3.1 pyOpenSSL==24.2.1 pyjks==20.0.0 objgraph==3.6.2 gevent==26.9.0 eventlet==0.41.3
fi
cd "$work"
CONCLAVE_ZK_HOSTS="$hosts" PYTHONPATH="$here" "$venv/bin/python" -m pytest -p conclave_kazoo_shim \
  --pyargs kazoo.tests -rfs -q -p no:cacheprovider --timeout 60 "$@" || status=$?
exit "${status:-0}"
