#!/usr/bin/env bash
# A rolling upgrade's middle, checked with real binaries: a 3-member --auth cluster whose member 3
# runs an older build (OLD) beside two members of this build, first with the older member
# leading, then following. A user writes with conclavectl started at each member (it follows the
# leader, so the writes go through the leader); every write must be acknowledged and applied on
# all three members (each answers a serializable read from its own state), and no member may log
# an undecodable peer message
# (README "Rolling upgrades"). Opt-in (it needs an older binary), not part of CI:
#
#   git worktree add /tmp/old <older commit> && (cd /tmp/old && cargo build -p conclave-server)
#   server/tests/upgrade/mixed_versions.sh /tmp/old/target/debug/conclave
#
# NEW defaults to this checkout's debug build (built here); CONCLAVECTL to its conclavectl.
set -euo pipefail
cd "$(dirname "$0")/../../.."

old=${1:?usage: $0 OLD_CONCLAVE_BINARY [NEW_CONCLAVE_BINARY]}
[ -x "$old" ] || { echo "no executable older conclave binary at $old" >&2; exit 2; }
if [ -z "${2:-}" ]; then
  cargo build --locked -q -p conclave-server --bin conclave -p conclave-client --bin conclavectl
fi
new=${2:-target/debug/conclave}
ctl=${CONCLAVECTL:-target/debug/conclavectl}
puts=5

work=$(mktemp -d /tmp/conclave-mixed.XXXXXX)
echo root-pw > "$work/root-password"
ip=(0 127.0.0.31 127.0.0.32 127.0.0.33)
initial="1=${ip[1]}:7380,2=${ip[2]}:7380,3=${ip[3]}:7380"
bins=(0 "$new" "$new" "$old")
pids=()
stop() {
  kill "${pids[@]}" 2>/dev/null || true
  wait 2>/dev/null || true
}
trap stop EXIT

start_cluster() {
  rm -rf "$work"/n*
  pids=()
  for i in 1 2 3; do
    "${bins[$i]}" serve --node-id "$i" --data-dir "$work/n$i" --client-addr "${ip[$i]}:7379" \
      --peer-addr "${ip[$i]}:7380" --initial-cluster "$initial" --auth \
      --root-password-file "$work/root-password" > "$work/n$i.log" 2>&1 &
    pids+=($!)
  done
}

all="--endpoints ${ip[1]}:7379,${ip[2]}:7379,${ip[3]}:7379"
root="$all --user root:root-pw"
failed=0
for leader in 3 1; do
  kind=$([ "$leader" = 3 ] && echo older || echo newer)
  echo "== the $kind build leads"
  start_cluster
  for _ in $(seq 1 120); do "$ctl" $root user list > /dev/null 2>&1 && break; sleep 0.25; done
  "$ctl" $root user add a:a-pw > /dev/null
  "$ctl" $root role add a > /dev/null
  "$ctl" $root role grant-permission a readwrite /a/ --prefix > /dev/null
  "$ctl" $root user grant-role a a > /dev/null
  for _ in $(seq 1 20); do
    now=$("$ctl" --endpoints "${ip[1]}:7379" endpoint status -o json | grep -o '"leader":[0-9]*' | cut -d: -f2)
    [ "$now" = "$leader" ] && break
    "$ctl" $root move-leader "$leader" > /dev/null 2>&1 || sleep 0.5
  done
  [ "$now" = "$leader" ] || { echo "FAIL: member $leader did not take the leadership"; failed=1; }
  for i in 1 2 3; do
    for k in $(seq 1 $puts); do
      if ! out=$("$ctl" --endpoints "${ip[$i]}:7379" --user a:a-pw put "/a/via$i-$k" v 2>&1); then
        echo "FAIL: user a's put $k through member $i: $out"
        failed=1
      fi
    done
  done
  for i in 1 2 3; do
    # Serializable, answered from member i's own state: it has applied (decoded) every
    # acknowledged write within 10 s.
    for _ in $(seq 1 40); do
      n=$("$ctl" --endpoints "${ip[$i]}:7379" --user root:root-pw get /a/via --prefix --serializable 2>&1 \
        | grep -c '^/a/via' || true)
      [ "$n" = $((3 * puts)) ] && break
      sleep 0.25
    done
    echo "member $i serves $n of $((3 * puts)) keys"
    [ "$n" = $((3 * puts)) ] || { echo "FAIL: member $i does not serve every acknowledged write"; failed=1; }
  done
  "$ctl" $root endpoint status
  bad=$(cat "$work"/n*.log | grep -c -i "undecodable\|cannot decode\|panicked" || true)
  if [ "$bad" != 0 ]; then
    (grep -h -i "undecodable\|cannot decode\|panicked" "$work"/n*.log | head -3 | cut -c1-300) || true
    echo "FAIL: $bad log lines of undecodable messages or panics (first 3 above; logs in $work)"
    failed=1
  fi
  mkdir -p "$work/leader-$leader" && mv "$work"/n*.log "$work/leader-$leader/"
  stop
done
if [ "$failed" = 0 ]; then echo "PASSED (logs in $work)"; else echo "FAILED (logs in $work)"; exit 1; fi
