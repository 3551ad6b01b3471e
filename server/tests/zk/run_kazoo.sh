#!/usr/bin/env bash
# Runs kazoo's own test suite (PyPI kazoo==2.11.0) against a real 3-member Conclave cluster
# through its ZooKeeper port. Needs: python3 with venv (Debian: python3-venv), a built
# `conclave` binary (cargo build -p conclave-server), network access to PyPI once.
#   server/tests/zk/run_kazoo.sh [pytest args...]     e.g. -k test_client
# Member logs are kept in target/kazoo-logs/. Prints pytest's pass/skip/fail summary (skips carry their reason); exit status is pytest's.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../../.." && pwd)"
target="${CARGO_TARGET_DIR:-$root/target}"
bin="${CONCLAVE_BIN:-$target/debug/conclave}"
[ -x "$bin" ] || { echo "missing $bin: run cargo build -p conclave-server" >&2; exit 2; }
python3 -c 'import venv' 2>/dev/null || { echo "python3 venv missing: apt-get install python3-venv" >&2; exit 2; }
venv="$target/kazoo-venv"
if [ ! -x "$venv/bin/pytest" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q kazoo==2.11.0 pytest==8.3.4 pytest-timeout==2.3.1 pyOpenSSL==24.2.1 pyjks==20.0.0 objgraph==3.6.2 gevent==26.9.0 eventlet==0.41.3
fi
work="$(mktemp -d)"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  mkdir -p "$target/kazoo-logs" && cp "$work"/n*.log "$target/kazoo-logs/" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
declare -a peer client zk
for i in 1 2 3; do peer[$i]=$(port); client[$i]=$(port); zk[$i]=$(port); done
initial="1=127.0.0.1:${peer[1]},2=127.0.0.1:${peer[2]},3=127.0.0.1:${peer[3]}"
hosts=""
for i in 1 2 3; do
  "$bin" serve --node-id "$i" --data-dir "$work/n$i" --client-addr "127.0.0.1:${client[$i]}" \
    --peer-addr "127.0.0.1:${peer[$i]}" --initial-cluster "$initial" --zk-addr "127.0.0.1:${zk[$i]}" \
    --election-timeout-ms 500 --heartbeat-ms 100 --log "${CONCLAVE_LOG:-warn,conclave_server::zk=debug}" >"$work/n$i.log" 2>&1 &
  pids+=($!)
  hosts="${hosts:+$hosts,}127.0.0.1:${zk[$i]}"
done
# Ready when every member answers ruok and one of them has a leader (srvr says leader).
deadline=$((SECONDS + 60))
until [ $SECONDS -ge $deadline ]; do
  leaders=0
  for i in 1 2 3; do
    if out=$(python3 - "${zk[$i]}" <<'PY' 2>/dev/null
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=1)
s.sendall(b"srvr"); print(s.recv(4096).decode())
PY
    ); then grep -q "Mode: leader" <<<"$out" && leaders=$((leaders + 1)); fi
  done
  [ "$leaders" = 1 ] && break
  sleep 0.2
done
[ "$leaders" = 1 ] || { echo "cluster did not elect a leader within 60 s" >&2; tail -20 "$work"/n*.log >&2; exit 1; }
echo "conclave cluster ready: $hosts"
cd "$work"
CONCLAVE_ZK_HOSTS="$hosts" PYTHONPATH="$here" "$venv/bin/python" -m pytest -p conclave_kazoo_shim \
  --pyargs kazoo.tests -rfs -q -p no:cacheprovider --timeout 60 "$@" || status=$?
exit "${status:-0}"
