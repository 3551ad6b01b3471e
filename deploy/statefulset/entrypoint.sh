#!/bin/sh
# StatefulSet entrypoint: the pod's ordinal is its node identity (node id = ordinal + 1), and
# every member is addressed through the headless Service's stable DNS names.
#   CONCLAVE_REPLICAS   number of members in the initial cluster (default 3)
#   CONCLAVE_SERVICE    headless Service name (default conclave)
#   POD_NAMESPACE       namespace (from the downward API)
set -eu
name="${HOSTNAME%-*}"                 # conclave-2 -> conclave
ordinal="${HOSTNAME##*-}"             # conclave-2 -> 2
replicas="${CONCLAVE_REPLICAS:-3}"
service="${CONCLAVE_SERVICE:-conclave}"
domain="${service}.${POD_NAMESPACE:-default}.svc"

initial=""
i=0
while [ "$i" -lt "$replicas" ]; do
  initial="${initial:+$initial,}$((i + 1))=${name}-${i}.${domain}:7380"
  i=$((i + 1))
done

export CONCLAVE_NODE_ID="$((ordinal + 1))"
export CONCLAVE_DATA_DIR="${CONCLAVE_DATA_DIR:-/var/lib/conclave}"
export CONCLAVE_CLIENT_ADDR="0.0.0.0:7379"
export CONCLAVE_PEER_ADDR="0.0.0.0:7380"
export CONCLAVE_ADVERTISE_CLIENT_ADDR="${HOSTNAME}.${domain}:7379"
export CONCLAVE_INITIAL_CLUSTER="$initial"
exec conclave serve "$@"
