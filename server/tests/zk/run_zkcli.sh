#!/usr/bin/env bash
# A scripted zkCli session (ZooKeeper 3.8's org.apache.zookeeper.ZooKeeperMain from Debian
# libzookeeper-java, what zkCli.sh runs) against a real 3-member Conclave cluster:
# create/get/set/ls/stat/delete/deleteall, ephemeral and sequential nodes, sync, whoami,
# getEphemerals, getAllChildrenNumber, config (the members from /zookeeper/config), createTTL
# (create -t). Fails on any missing expected output.
#   server/tests/zk/run_zkcli.sh          (needs a built conclave: cargo build -p conclave-server)
source "$(dirname "$0")/cluster.sh"
command -v java >/dev/null || { echo "missing java: apt-get install openjdk-17-jre-headless" >&2; exit 2; }
cp=""
for j in zookeeper zookeeper-jute slf4j-api slf4j-nop; do
  [ -f "/usr/share/java/$j.jar" ] || { echo "missing /usr/share/java/$j.jar: apt-get install libzookeeper-java libslf4j-java" >&2; exit 2; }
  cp="$cp/usr/share/java/$j.jar:"
done
out="$work/zkcli.out"
timeout 120 java -cp "$cp" org.apache.zookeeper.ZooKeeperMain -server "$hosts" >"$out" 2>&1 <<'CLI' || true
create /zkcli v1
get /zkcli
set /zkcli v2
get -s /zkcli
create -e /zkcli/eph e
create -s /zkcli/seq- s
ls /zkcli
ls -s /
getEphemerals /zkcli
getAllChildrenNumber /zkcli
sync /zkcli
whoami
stat /zkcli
delete /zkcli
create /zkcli/deep
create /zkcli/deep/er x
deleteall /zkcli
ls /
get /zkcli
config
create -t 600000 /zkcli-ttl t
stat /zkcli-ttl
quit
CLI
cat "$out"
status=0
expect() { grep -qF -- "$1" "$out" || { echo "MISSING: $1" >&2; status=1; }; }
expect "Created /zkcli"
expect "v1"
expect "dataVersion = 1"
expect "Created /zkcli/seq-0000000001"
expect "[eph, seq-0000000001]"
expect "[/zkcli/eph]"
expect "Node not empty: /zkcli"
expect "Node does not exist: /zkcli"
expect "[zookeeper]"
for i in 1 2 3; do expect ";127.0.0.1:${zk[$i]}"; done
expect "version="
expect "Created /zkcli-ttl"
expect "ephemeralOwner = 0xff000000000927c0"
exit "$status"
