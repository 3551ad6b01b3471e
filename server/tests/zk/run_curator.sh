#!/usr/bin/env bash
# Apache Curator 5.4 recipes (Debian libcurator-framework-java, libcurator-recipes-java, Java 17)
# against a real 3-member Conclave cluster through its ZooKeeper port: LeaderLatch,
# LeaderSelector, InterProcessMutex, SharedCount, DistributedAtomicLong, TreeCache, CuratorCache
# (persistent recursive watches), PersistentNode and a transaction, then the Conclave leader is
# killed (kill -9) and every recipe runs again. Compiled with javac (no Maven).
#   server/tests/zk/run_curator.sh          (needs a built conclave: cargo build -p conclave-server)
source "$(dirname "$0")/cluster.sh"
command -v javac >/dev/null || { echo "missing javac: apt-get install openjdk-17-jdk-headless" >&2; exit 2; }
cp=""
for j in curator-client curator-framework curator-recipes zookeeper zookeeper-jute guava slf4j-api slf4j-nop; do
  [ -f "/usr/share/java/$j.jar" ] || { echo "missing /usr/share/java/$j.jar: apt-get install libcurator-recipes-java libcurator-framework-java libslf4j-java" >&2; exit 2; }
  cp="$cp/usr/share/java/$j.jar:"
done
javac -nowarn -d "$work/classes" -cp "$cp" "$here/curator/CuratorCheck.java"
coproc CURATOR { timeout 300 java -cp "$cp$work/classes" CuratorCheck "$hosts" 2>&1; }
result=1
while IFS= read -r line <&"${CURATOR[0]}"; do
  echo "$line"
  case "$line" in
    kill-leader-now)
      old=$(leader)
      kill -9 "${pids[$old]}"
      echo "killed the Conclave leader (member $old)"
      deadline=$((SECONDS + 30))
      until { new=$(leader); [ -n "$new" ] && [ "$new" != "$old" ]; } || [ $SECONDS -ge $deadline ]; do sleep 0.1; done
      echo "new leader: member ${new:-none}"
      echo leader-killed >&"${CURATOR[1]}"
      ;;
    "all ok") result=0 ;;
  esac
done
exit "$result"
