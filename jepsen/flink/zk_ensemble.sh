# Sourced by run_flink_ha.sh: starts a 3-member ZooKeeper 3.8 ensemble (Debian `zookeeper`,
# `zkServer.sh start-foreground`, default tickTime 2000 like Conclave's --zk-tick-ms) on
# loopback, bounded in time, stopped on exit with its logs kept in $logs (the caller's).
# Sets: $hosts (host:port,... of the client ports), pids[i], $work; defines leader().
set -euo pipefail
script="${ZKSERVER:-/usr/share/zookeeper/bin/zkServer.sh}"
[ -x "$script" ] || { echo "missing $script: apt-get install zookeeper" >&2; exit 2; }
work="$(mktemp -d)"
declare -a pids client
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  cp -r "$work"/zk? "$work"/zk?.log "$logs/" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
four() { python3 - "${client[$1]}" "$2" <<'PY' 2>/dev/null
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=1)
s.sendall(sys.argv[2].encode()); print(s.recv(65536).decode())
PY
}
leader() { for i in 1 2 3; do if four "$i" srvr | grep -q "Mode: leader"; then echo "$i"; return; fi; done; }
servers=""
for i in 1 2 3; do client[$i]=$(port); servers="${servers}server.$i=127.0.0.1:$(port):$(port)"$'\n'; done
hosts=""
for i in 1 2 3; do
  mkdir -p "$work/zk$i/data" && echo "$i" >"$work/zk$i/data/myid"
  printf 'tickTime=2000\ninitLimit=10\nsyncLimit=5\ndataDir=%s\nclientPort=%s\nclientPortAddress=127.0.0.1\nmaxClientCnxns=0\nadmin.enableServer=false\n4lw.commands.whitelist=srvr,ruok\n%s' \
    "$work/zk$i/data" "${client[$i]}" "$servers" >"$work/zk$i/zoo.cfg"
  ZOO_LOG_DIR="$work/zk$i" "$script" start-foreground "$work/zk$i/zoo.cfg" >"$work/zk$i.log" 2>&1 &
  pids[$i]=$!
  hosts="${hosts:+$hosts,}127.0.0.1:${client[$i]}"
done
deadline=$((SECONDS + 60))
until [ -n "$(leader)" ] || [ $SECONDS -ge $deadline ]; do sleep 0.2; done
[ -n "$(leader)" ] || { echo "ZooKeeper ensemble did not elect a leader within 60 s" >&2; tail -20 "$work"/zk*.log >&2; exit 1; }
echo "zookeeper ensemble ready: $hosts"
