#!/bin/sh
# Validates the manifests offline (no cluster, no network once the venv exists):
# 1. the built-in kinds (Service, PodDisruptionBudget, StatefulSet) against the Kubernetes 1.37
#    OpenAPI schemas bundled in PyPI `kubernetes-validate` 1.37.0, strictly (unknown fields fail);
# 2. what no bundled schema covers (the ServiceMonitor CRD, the Kustomization) and the references
#    between objects, by check_manifests.py: required fields and types of those two kinds, every
#    file listed in the kustomization, selectors matching the pod labels, the StatefulSet's
#    headless Service publishing not-ready addresses, probe and ServiceMonitor ports naming ports
#    that exist.
#
#   deploy/statefulset/validate.sh       venv: $CONCLAVE_K8S_VENV (default target/venv-k8s),
#                                        created with pip on first use (needs PyPI once).
# Needs: python3 with venv (Debian: python3-venv).
set -eu
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
venv="${CONCLAVE_K8S_VENV:-$root/target/venv-k8s}"
if [ ! -x "$venv/bin/kubernetes-validate" ]; then
  if ! python3 -m venv "$venv"; then
    echo "validate.sh: cannot create a Python venv; install the Debian package python3-venv" >&2
    exit 2
  fi
  "$venv/bin/pip" install -q kubernetes-validate==1.37.0
fi
cd "$here"
out="$("$venv/bin/kubernetes-validate" --strict -k 1.37.0 services.yaml pdb.yaml statefulset.yaml 2>&1)" || {
  echo "$out" >&2
  exit 1
}
echo "$out"
if echo "$out" | grep -q "Couldn't find schema"; then
  echo "validate.sh: a built-in kind was not validated" >&2
  exit 1
fi
"$venv/bin/python" "$here/check_manifests.py" "$here"
