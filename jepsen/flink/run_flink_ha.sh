#!/usr/bin/env bash
# Apache Flink's ZooKeeper HA on Conclave vs ZooKeeper 3.8: JobManager failover, measured.
#   jepsen/flink/run_flink_ha.sh [--backend conclave|zookeeper|both] [--rounds N] [--timeout SECS]
# Per backend: a 3-member cluster (Conclave members with --zk-addr, via server/tests/zk/cluster.sh,
# or a Debian ZooKeeper 3.8 ensemble via zk_ensemble.sh), a standalone Flink 2.x cluster
# (2 JobManagers, 1 TaskManager, high-availability.type: zookeeper) from PyPI's
# apache-flink-libraries, the checkpointing job CheckpointedCounter.java (javac, no Maven), then
# N rounds (default 3, at most 20) of kill -9 of the leading JobManager (see flink_ha.py).
# Results and every log land in target/flink-ha/<UTC time>/ (results.tsv, summary.txt/.svg).
# Needs: java/javac 17 (openjdk-17-jdk-headless), python3-venv, zookeeper (for that backend),
# a built conclave (cargo build -p conclave-server; CONCLAVE_BIN overrides) for Conclave.
set -euo pipefail
flinkdir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$flinkdir/../.." && pwd)"
target="${CARGO_TARGET_DIR:-$root/target}"
backend=both rounds=3 total=900
while [ $# -gt 0 ]; do
  case "$1" in
    --backend) backend="$2"; shift 2 ;;
    --rounds) rounds="$2"; shift 2 ;;
    --timeout) total="$2"; shift 2 ;;
    *) echo "unknown argument $1 (use --backend conclave|zookeeper|both, --rounds N, --timeout SECS)" >&2; exit 2 ;;
  esac
done
case "$backend" in conclave|zookeeper) backends=("$backend") ;; both) backends=(conclave zookeeper) ;;
  *) echo "--backend must be conclave, zookeeper or both, not '$backend'" >&2; exit 2 ;; esac
[[ "$rounds" =~ ^[0-9]+$ ]] && [ "$rounds" -ge 1 ] && [ "$rounds" -le 20 ] ||
  { echo "--rounds must be 1..20, not '$rounds'" >&2; exit 2; }
[[ "$total" =~ ^[0-9]+$ ]] || { echo "--timeout must be seconds, not '$total'" >&2; exit 2; }
for tool in java javac jar; do
  command -v "$tool" >/dev/null || { echo "missing $tool: apt-get install openjdk-17-jdk-headless" >&2; exit 2; }
done

# Flink's runtime from PyPI, installed once into target/flink-venv.
venv="$target/flink-venv"
version="${FLINK_VERSION:-2.3.0}"
flink_home() { "$venv/bin/python" -c 'import pyflink; print(list(pyflink.__path__)[0])' 2>/dev/null; }
home="$(flink_home || true)"
if [ -z "$home" ] || ! ls "$home"/lib/flink-dist-*.jar >/dev/null 2>&1; then
  python3 -m venv "$venv" || { echo "cannot create $venv: apt-get install python3-venv" >&2; exit 2; }
  timeout 900 "$venv/bin/pip" install --quiet "apache-flink-libraries==$version" ||
    { echo "pip could not install apache-flink-libraries==$version (PyPI) within 900 s" >&2; exit 2; }
  home="$(flink_home)" || { echo "pip installed apache-flink-libraries==$version but no pyflink package is importable from $venv" >&2; exit 2; }
fi
echo "flink: $(basename "$(ls "$home"/lib/flink-dist-*.jar)") from $home"

out="$target/flink-ha/$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$out/job"
javac -nowarn -d "$out/job" -cp "$home/lib/*" "$flinkdir/CheckpointedCounter.java"
jar --create --file "$out/job.jar" -C "$out/job" .
# --timeout bounds the runs, not the one-time install above.
run_deadline=$((SECONDS + total))
results="$out/results.tsv"
printf 'backend\tround\tleader_s\trunning_s\tcompleted_before_kill\tmax_id_before_kill\trestored\tfirst_new_id\tverdict\n' >"$results"

status=0
for b in "${backends[@]}"; do
  left=$((run_deadline - SECONDS))
  [ "$left" -gt 60 ] || { echo "[$b] skipped: overall --timeout $total s used up" >&2; status=1; continue; }
  logs="$out/$b"
  mkdir -p "$logs"
  (
    if [ "$b" = conclave ]; then
      source "$root/server/tests/zk/cluster.sh"
      trap 'cp "$work"/n*.log "$logs/" 2>/dev/null || true; cleanup' EXIT
    else
      source "$flinkdir/zk_ensemble.sh"
    fi
    timeout --kill-after=10 "$((run_deadline - SECONDS))" python3 "$flinkdir/flink_ha.py" --backend "$b" \
      --quorum "$hosts" --flink-home "$home" --jar "$out/job.jar" --out "$logs" --results "$results" \
      --rounds "$rounds"
  ) || status=1
done

python3 - "$results" "$out/summary.txt" <<'PY'
import statistics, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1])][1:]
lines = ["backend     rounds ok  median kill->leader  median leader->RUNNING  median kill->RUNNING  (s)"]
for b in sorted({r[0] for r in rows}):
    mine = [r for r in rows if r[0] == b]
    ok = sum(r[8] == "ok" for r in mine)
    lead = statistics.median(float(r[2]) for r in mine)
    run = statistics.median(float(r[3]) for r in mine)
    recover = statistics.median(float(r[3]) - float(r[2]) for r in mine)
    lines.append(f"{b:<11} {len(mine):>6} {ok:>2}  {lead:>19.2f}  {recover:>22.2f}  {run:>20.2f}")
lines.append("")
lines.append("kill -> RUNNING per round (one # per 0.5 s)")
for r in rows:
    lines.append(f"{r[0]:<10} #{r[1]:<2} {'#' * round(float(r[3]) * 2)} {float(r[3]):.2f}")
open(sys.argv[2], "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
# The same per round as an SVG: kill -> leader (dark) inside kill -> RUNNING (light), in seconds.
scale, top = 20, max([float(r[3]) for r in rows] + [1])
svg = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{int(top * scale) + 200}" height="{len(rows) * 22 + 30}" '
       'font-family="monospace" font-size="12">']
for i, r in enumerate(rows):
    y = 20 + i * 22
    svg.append(f'<text x="0" y="{y + 12}">{r[0]} #{r[1]}</text>')
    svg.append(f'<rect x="110" y="{y}" width="{float(r[3]) * scale:.0f}" height="16" fill="#9ecae1"/>')
    svg.append(f'<rect x="110" y="{y}" width="{float(r[2]) * scale:.0f}" height="16" fill="#3182bd"/>')
    svg.append(f'<text x="{115 + float(r[3]) * scale:.0f}" y="{y + 12}">{float(r[2]):.1f} / {float(r[3]):.1f} s</text>')
svg.append('<text x="0" y="12">kill -> leader (dark), kill -> job RUNNING (light)</text></svg>')
open(sys.argv[2].replace(".txt", ".svg"), "w").write("\n".join(svg) + "\n")
PY
echo "results: $results"
exit "$status"
