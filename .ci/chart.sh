#!/usr/bin/env bash
# Lints the chart strictly and validates what it renders against the Kubernetes schemas, for
# the default values and for each ci/*-values.yaml. Needs .ci/tools.sh first.
set -euo pipefail
cd "$(dirname "$0")/.."
CHART=helm/segment-connections
K8S_VERSION=1.35.0
scratch=$(mktemp -d); trap 'rm -rf "$scratch"' EXIT
# helm writes nothing into $HOME.
export XDG_CACHE_HOME=$scratch XDG_CONFIG_HOME=$scratch XDG_DATA_HOME=$scratch
helm=.tools/bin/helm
validate=.tools/venv/bin/kubernetes-validate

check() { # name, then helm's value arguments
  local name=$1; shift
  echo "-- chart: $name"
  "$helm" lint --strict "$CHART" "$@" >"$scratch/lint.txt" || { cat "$scratch/lint.txt"; exit 1; }
  "$helm" template ci "$CHART" --namespace ci "$@" >"$scratch/$name.yaml"
  # CRDs (ServiceMonitor) have no schema here: kubernetes-validate only warns about them.
  "$validate" --strict --quiet -k "$K8S_VERSION" "$scratch/$name.yaml"
}

check default
for values in "$CHART"/ci/*-values.yaml; do
  check "$(basename "$values" .yaml)" -f "$values"
done

# The schema and the template checks refuse what cannot work.
refuse() { # what, then helm's value arguments
  local what=$1; shift
  if "$helm" template ci "$CHART" "$@" >/dev/null 2>&1; then
    echo "chart accepted $what"; exit 1
  fi
}
refuse "two replicas on SQLite" --set replicaCount=2
refuse "the HPA on SQLite" --set autoscaling.enabled=true
refuse "a grace period longer than the pod's" --set config.shutdownGraceSeconds=30
refuse "PostgreSQL without a URL" --set store.type=postgres --set secrets.encryptionKey=00
refuse "auth without tokens" --set auth.enabled=true
refuse "TLS without a certificate" --set tls.enabled=true
echo "chart ok"
