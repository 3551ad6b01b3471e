#!/bin/sh
# The container test suite of deploy/statefulset: builds the image offline (build-image.sh),
# validates the manifests (validate.sh), then runs `statefulset-suite` (jepsen/src/bin/
# statefulset_suite/): pods conclave-0..4 as Docker containers on a private network, started
# with the env and args of statefulset.yaml, through formation, a rolling restart, scaling
# 3 -> 5 -> 3, a lost volume, a partition and kill -9 of every pod, with a writer and a job
# manager running throughout. Prints a summary table; timings go to
# target/statefulset-suite/timings.tsv. Exit 0 = passed.
#
#   deploy/statefulset/test.sh [SUITE ARGS]   (under a minute once built; bounded at 15 minutes)
#   SUITE ARGS go to statefulset-suite, e.g. --subnet 10.99.0 if 10.213.57.0/24 is taken, --keep.
#
# Needs: docker (Debian: docker.io) with a running daemon, python3 + PyYAML (Debian:
# python3-yaml), cargo; validate.sh needs PyPI once for its venv.
set -eu
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
out="$root/target/statefulset-suite"
mkdir -p "$out"
if ! command -v docker >/dev/null 2>&1; then
  echo "test.sh: docker not found; install the Debian package docker.io" >&2
  exit 2
fi
if ! docker info >/dev/null 2>&1; then
  echo "test.sh: the Docker daemon does not answer (is docker.io's service running, and may this user use it?)" >&2
  exit 2
fi
if ! python3 -c 'import yaml' 2>/dev/null; then
  echo "test.sh: python3 with PyYAML is needed to read the manifest; install it with: python3 -m pip install PyYAML (PyPI), or the Debian package python3-yaml" >&2
  exit 2
fi

"$here/validate.sh"
"$here/build-image.sh" conclave:dev | tee "$out/image.txt"
python3 -c 'import json, sys, yaml; json.dump([d for d in yaml.safe_load_all(open(sys.argv[1])) if d], sys.stdout)' \
  "$here/statefulset.yaml" >"$out/manifest.json"
cd "$root"
cargo build --locked -p conclave-jepsen --bin statefulset-suite
target="${CARGO_TARGET_DIR:-$root/target}"
timeout 1000 "$target/debug/statefulset-suite" --manifest-json "$out/manifest.json" --image conclave:dev \
  --timings "$out/timings.tsv" --limit-secs 900 "$@"
