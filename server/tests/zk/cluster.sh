# Sourced by the ZooKeeper-protocol client runners: starts a 3-member Conclave cluster with
# --zk-addr on loopback, bounded in time, stopped (and its logs kept in target/zk-logs/) on exit.
# Sets: $hosts (host:port,... of the ZooKeeper ports), zk[i], pids[i], $work.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../../.." && pwd)"
target="${CARGO_TARGET_DIR:-$root/target}"
bin="${CONCLAVE_BIN:-$target/debug/conclave}"
[ -x "$bin" ] || { echo "missing $bin: run cargo build -p conclave-server" >&2; exit 2; }
work="$(mktemp -d)"
declare -a pids peer client zk
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  mkdir -p "$target/zk-logs" && cp "$work"/n*.log "$target/zk-logs/" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# Answer of a four-letter word from member $1.
four() { python3 - "${zk[$1]}" "$2" <<'PY' 2>/dev/null
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=1)
s.sendall(sys.argv[2].encode()); print(s.recv(65536).decode())
PY
}
# The member that leads now (empty if none answers so).
leader() { for i in 1 2 3; do if four "$i" srvr | grep -q "Mode: leader"; then echo "$i"; return; fi; done; }
for i in 1 2 3; do peer[$i]=$(port); client[$i]=$(port); zk[$i]=$(port); done
initial="1=127.0.0.1:${peer[1]},2=127.0.0.1:${peer[2]},3=127.0.0.1:${peer[3]}"
hosts=""
for i in 1 2 3; do
  "$bin" serve --node-id "$i" --data-dir "$work/n$i" --client-addr "127.0.0.1:${client[$i]}" \
    --peer-addr "127.0.0.1:${peer[$i]}" --initial-cluster "$initial" --zk-addr "127.0.0.1:${zk[$i]}" \
    --election-timeout-ms 500 --heartbeat-ms 100 --log "${CONCLAVE_LOG:-warn,conclave_server::zk=debug}" \
    >"$work/n$i.log" 2>&1 &
  pids[$i]=$!
  hosts="${hosts:+$hosts,}127.0.0.1:${zk[$i]}"
done
deadline=$((SECONDS + 60))
# One answer decides: asking twice could miss a leader that answered once (a slow `srvr`).
led=""
until [ -n "$led" ] || [ $SECONDS -ge $deadline ]; do led="$(leader)"; [ -n "$led" ] || sleep 0.2; done
[ -n "$led" ] || { echo "cluster did not elect a leader within 60 s" >&2; tail -n 20 "$work"/n*.log >&2; exit 1; }
echo "conclave cluster ready: $hosts"
