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
# What the schemas cannot check: the image (digest), the `helm test` Pod, and the PrometheusRule
# (each alert's PromQL parsed, its metrics those src/metrics.rs defines). promtool itself is on
# no registry we reach, so the alert templates in the annotations are not checked.
.tools/venv/bin/python .ci/chart_check.py "$scratch" src/metrics.rs

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
refuse "a malformed image digest" --set image.digest=sha256:0123abcd
refuse "an image digest without its algorithm" --set image.digest=0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef
refuse "mTLS without a client certificate for helm test" --set tls.enabled=true \
  --set tls.secretName=t --set tls.clientAuth=true --set tls.clientCaSecretName=c
refuse "an alert share above 1" --set metrics.prometheusRule.rejectedShare.threshold=2
refuse "an alert window that is not a duration" --set-string metrics.prometheusRule.window=5min
echo "chart ok"
