#!/usr/bin/env bash
# `make demo`: a local sandbox cluster, the dev environment rendered, compared with git and
# the live cluster, deployed, and a change classified; last, a GitOps round where another
# hand applies and dsroll conducts (scripts/demo-gitops.sh). Runs in a scratch copy of the
# project so your work tree is never touched. The sandbox stays up: `make demo-down`.
# Each run starts from an empty demo namespace, so it passes however often it runs.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run() { printf '$ %s\n' "$*" >&2; "$@"; }

step "1. a sandbox: real kube-apiserver, controller-manager, scheduler and etcd; 12 kwok nodes"
run dsroll sandbox up --name demo --nodes 12
export KUBECONFIG="$(dsroll sandbox status --name demo -o json | python3 -c 'import json,sys; print(json.load(sys.stdin)["kubeconfig"])')"
kubectl="$(python3 -c 'from dsroll.sandbox.build import ensure_binaries; print(ensure_binaries().kubectl)')"

# A sandbox still up from an earlier run keeps that run's DaemonSets, revisions, leases and
# backups: start from an empty namespace.
if "$kubectl" get namespace dsroll-demo >/dev/null 2>&1; then
  echo "deleting the namespace dsroll-demo left by an earlier run" >&2
  "$kubectl" delete namespace dsroll-demo --wait=true --timeout=180s >/dev/null
fi
"$kubectl" create namespace dsroll-demo >/dev/null

work="$(mktemp -d /tmp/dsroll-demo.XXXXXX)"
cp -r "$root/environments" "$root/templates" "$work/"
cd "$work"
git init -q -b main && git add -A && git -c user.name=demo -c user.email=demo@dsroll.invalid commit -qm "demo project"

step "2. which hardware class each live node falls into"
run dsroll nodes dev

step "3. render one DaemonSet per (workload, class) and commit the result"
run dsroll render dev
git add -A && git -c user.name=demo -c user.email=demo@dsroll.invalid commit -qm "render dev"
run dsroll render dev --check

step "4. compare with the live cluster: nothing there yet, so every variant is added"
run dsroll diff dev --against live -o json | python3 -c 'import json,sys; r=json.load(sys.stdin); print(r["summary"]); [print(" ", v["namespace"]+"/"+v["name"], v["change"]) for v in r["variants"]]' || true

step "5. deploy: every variant is new, so dsroll creates each one and waits until its pods are Ready"
run dsroll rollout dev --yes
run "$kubectl" -n dsroll-demo get ds
echo "pods per node (every node runs exactly one fluent-bit and one node-exporter variant):"
"$kubectl" -n dsroll-demo get pods -o custom-columns=NODE:.spec.nodeName,POD:.metadata.name,CLASS:.metadata.labels.dsroll\\.io/class --sort-by=.spec.nodeName
run dsroll diff dev --against live

step "6. bump node-exporter, commit, and see what the change means before anything is applied"
sed -i 's/tag: v1.8.2/tag: v1.9.0/' environments/dev.yaml
run dsroll render dev >/dev/null
git -c user.name=demo -c user.email=demo@dsroll.invalid commit -qam "node-exporter v1.9.0"
run dsroll diff dev --against live || true
run dsroll plan dev --workload node-exporter

step "7. the staged rollout: canary node first, then 50 %, then everyone; 5 s pauses between steps"
run dsroll rollout dev --workload node-exporter --yes
run dsroll status dev --workload node-exporter
run dsroll history dev --workload node-exporter --class general

step "8. a bad version (its pods crash-loop): caught on the canary node and rolled back automatically"
sed -i 's/tag: v1.9.0/tag: v1.9.1\n      podAnnotations: {sandbox.dsroll.io\/behaviour: crash}/' environments/dev.yaml
run dsroll render dev >/dev/null
git -c user.name=demo -c user.email=demo@dsroll.invalid commit -qam "node-exporter v1.9.1 (crashes)"
run dsroll rollout dev --workload node-exporter --class general --yes || echo "exit code $? (1: failed and rolled back)"
run dsroll status dev --workload node-exporter --class general

step "9. and back to the very first revision, by the same batched executor"
first="$(dsroll history dev --workload node-exporter --class general -o json \
  | python3 -c 'import json,sys; print(min(r["revision"] for r in json.load(sys.stdin)["variants"][0]["revisions"]))')"
run dsroll rollback dev --workload node-exporter --class general --to-revision "$first" --yes
run dsroll history dev --workload node-exporter --class general

step "10. take over a DaemonSet dsroll did not create (the Kubernetes docs' fluentd-elasticsearch) and split it per class"
"$kubectl" apply -f - <<'YAML'
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: fluentd-elasticsearch, namespace: dsroll-demo, labels: {k8s-app: fluentd-logging}}
spec:
  selector: {matchLabels: {name: fluentd-elasticsearch}}
  template:
    metadata: {labels: {name: fluentd-elasticsearch}}
    spec:
      tolerations: [{key: node-role.kubernetes.io/control-plane, operator: Exists, effect: NoSchedule}]
      containers:
        - name: fluentd-elasticsearch
          image: quay.io/fluentd_elasticsearch/fluentd:v5.0.1
          resources: {limits: {memory: 200Mi}, requests: {cpu: 100m, memory: 200Mi}}
          volumeMounts: [{name: varlog, mountPath: /var/log}]
      terminationGracePeriodSeconds: 30
      volumes: [{name: varlog, hostPath: {path: /var/log}}]
YAML
"$kubectl" -n dsroll-demo rollout status ds/fluentd-elasticsearch --timeout=60s
python3 - <<'PY'
import re
path = "environments/dev.yaml"
text = open(path).read()
workload = """  - name: fluentd
    template: templates/fluentd-elasticsearch.yaml.j2
    values: {image: quay.io/fluentd_elasticsearch/fluentd, tag: v5.0.2}
    rollout: {pause: 1s}
    replaces: [{namespace: dsroll-demo, name: fluentd-elasticsearch}]
"""
open(path, "w").write(re.sub(r"^rollout:", workload + "rollout:", text, count=1, flags=re.M))
PY
run dsroll render dev >/dev/null
git add -A && git -c user.name=demo -c user.email=demo@dsroll.invalid commit -qm "fluentd: take over fluentd-elasticsearch, v5.0.2"
run dsroll plan dev --workload fluentd
run dsroll rollout dev --workload fluentd --yes
run "$kubectl" -n dsroll-demo get ds
run dsroll status dev --workload fluentd

step "11. and back: the original DaemonSet recreated from the backup, its pods handed back the same way"
run dsroll rollback dev --workload fluentd --yes
run "$kubectl" -n dsroll-demo get ds fluentd-elasticsearch

# 12-14: rollout.applier: external, in a scratch project and namespace of its own.
DEMO_KUBECTL="$kubectl" bash "$root/scripts/demo-gitops.sh"

step "done"
echo "The sandbox 'demo' is still running: export KUBECONFIG=$KUBECONFIG"
echo "The scratch project is $work. Stop the sandbox with: make demo-down"
