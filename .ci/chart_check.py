"""What kubernetes-validate cannot see in the chart's output (.ci/chart.sh runs it on the files it
rendered, one per values file): the image reference, the `helm test` Pod, and the PrometheusRule,
a CRD without a schema here. Every alert expression is parsed as PromQL (promql-parser; promtool
is on no registry we reach), names only metrics src/metrics.rs defines, and every alert has a
severity, a summary and a description.

Usage: chart_check.py RENDERED_DIR SRC_METRICS_RS
"""

import re
import sys
from pathlib import Path

import promql_parser
import yaml

DIGEST = "sha256:" + "0123456789abcdef" * 4
EXPECTED = {
    # name: (image, a PrometheusRule?, the test Pod's TLS flags)
    "default": ("ghcr.io/segment-connections/segment-connections:0.1.0", False, []),
    "full-values": (
        "registry.example.com/segment-connections@" + DIGEST,
        True,
        ["--ca-file", "--cert-file", "--key-file"],
    ),
    "sqlite-values": ("ghcr.io/segment-connections/segment-connections:0.1.0", False, ["--ca-file"]),
}
ALERTS = {
    "SegmentConnectionsDeliveryFailures",
    "SegmentConnectionsUpstreamRateLimited",
    "SegmentConnectionsRejectedEvents",
}


def fail(name, message):
    sys.exit(f"chart ({name}): {message}")


def metric_names(expr):
    names = []

    def visit(node):
        if isinstance(node, promql_parser.VectorSelector):
            names.append(node.name)

    promql_parser.walk(promql_parser.parse(expr), pre_visit=visit)
    return names


def check_rule(name, rule, known):
    alerts = set()
    for group in rule["spec"]["groups"]:
        for r in group["rules"]:
            alert = r.get("alert", "?")
            alerts.add(alert)
            try:
                used = metric_names(r["expr"])
            except ValueError as e:
                fail(name, f"{alert}: not PromQL ({e}):\n{r['expr']}")
            unknown = [m for m in used if m not in known]
            if not used or unknown:
                fail(name, f"{alert}: metrics not in src/metrics.rs: {unknown or 'none named'}")
            if not r.get("labels", {}).get("severity"):
                fail(name, f"{alert}: no severity label")
            for key in ("summary", "description"):
                if not r.get("annotations", {}).get(key):
                    fail(name, f"{alert}: no {key} annotation")
            if not re.fullmatch(r"([0-9]+(ms|s|m|h|d|w|y))+", str(r.get("for", ""))):
                fail(name, f"{alert}: `for` is not a duration: {r.get('for')!r}")
    if alerts != ALERTS:
        fail(name, f"alerts {sorted(alerts)}, expected {sorted(ALERTS)}")


def main():
    rendered, metrics_rs = Path(sys.argv[1]), Path(sys.argv[2])
    known = set(re.findall(r'"(segment_connections_[a-z0-9_]+)"', metrics_rs.read_text()))
    for name, (image, with_rule, tls_flags) in EXPECTED.items():
        docs = [d for d in yaml.safe_load_all((rendered / f"{name}.yaml").read_text()) if d]
        by_kind = {}
        for d in docs:
            by_kind.setdefault(d["kind"], []).append(d)
        pods = [d["spec"]["template"]["spec"] for d in by_kind["Deployment"]] + [
            d["spec"] for d in by_kind.get("Pod", [])
        ]
        for spec in pods:
            for c in spec["containers"]:
                if c["image"] != image:
                    fail(name, f"image {c['image']!r}, expected {image!r}")
        tests = [
            d for d in by_kind.get("Pod", [])
            if d["metadata"].get("annotations", {}).get("helm.sh/hook") == "test"
        ]
        if len(tests) != 1:
            fail(name, f"{len(tests)} helm test Pods, expected 1")
        test = tests[0]["spec"]
        args = test["containers"][0]["args"]
        if args[0] != "health" or test["restartPolicy"] != "Never":
            fail(name, f"the test Pod does not run `health` once: {args}")
        if [a for a in args if a in ("--ca-file", "--cert-file", "--key-file")] != tls_flags:
            fail(name, f"the test Pod's TLS flags: {args}")
        scheme = "https://" if tls_flags else "http://"
        server = args[args.index("--server") + 1]
        if not server.startswith(scheme) or ".svc:" not in server:
            fail(name, f"the test Pod's --server: {server}")
        rules = by_kind.get("PrometheusRule", [])
        if len(rules) != (1 if with_rule else 0):
            fail(name, f"{len(rules)} PrometheusRules, expected {1 if with_rule else 0}")
        for rule in rules:
            check_rule(name, rule, known)
    print("chart output ok: images, helm test Pods, PrometheusRule (PromQL parsed)")


main()
