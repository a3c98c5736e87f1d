#!/usr/bin/env bash
# The GitOps round of `make demo` (scripts/demo.sh runs it last): another hand applies the
# rendered files — here `kubectl apply`, as a CI job, Argo CD or Flux would — and dsroll
# conducts the revision it finds, in steps, then rolls a bad version back the GitOps way
# (`rollback --git-revert`). Needs KUBECONFIG (a running sandbox) and DEMO_KUBECTL (its
# kubectl); works in a scratch project of its own and the namespace dsroll-gitops.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
kubectl="${DEMO_KUBECTL:-kubectl}"
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run() { printf '$ %s\n' "$*" >&2; "$@"; }
commit() { git add -A && git -c user.name=demo -c user.email=demo@dsroll.invalid commit -qm "$1"; }
apply() { run "$kubectl" apply -f rendered/gitops/ --recursive; }  # the applier: it applies what is committed

if "$kubectl" get namespace dsroll-gitops >/dev/null 2>&1; then
  "$kubectl" delete namespace dsroll-gitops --wait=true --timeout=180s >/dev/null
fi
"$kubectl" create namespace dsroll-gitops >/dev/null
work="$(mktemp -d /tmp/dsroll-gitops.XXXXXX)"
mkdir -p "$work/environments" && cp -r "$root/templates" "$work/"
cd "$work"
write_env() {  # $1: node-exporter's tag, $2: its pod annotations
  cat > environments/gitops.yaml <<YAML
apiVersion: dsroll.io/v1alpha1
kind: Environment
metadata: {name: gitops}
cluster: {namespace: dsroll-gitops}
hardwareClasses:
  - name: general
    default: true
workloads:
  - name: node-exporter
    template: templates/node-exporter.yaml.j2
    values:
      image: quay.io/prometheus/node-exporter
      tag: $1
      port: 9110           # not 9100: the dev environment's node-exporter holds that hostPort on every node
      collectors: [systemd]
      resources: {requests: {cpu: 20m, memory: 32Mi}, limits: {memory: 64Mi}}
      podAnnotations: {$2}
rollout:
  applier: external        # Argo CD, Flux or CI apply rendered/gitops; dsroll never writes the DaemonSet
  steps: ["1", "50%", "100%"]
  maxUnavailable: 2
  pause: 2s
  readyTimeout: 1m
  onFailure: pause         # the way back is a git revert: rollback --git-revert
  canaryNodeSelector: {dsroll.io/canary: "true"}
YAML
}
git init -q -b main
write_env v1.8.2 "" && dsroll render gitops >/dev/null && commit "gitops: node-exporter v1.8.2"

step "12. GitOps: kubectl apply (as CI, Argo CD or Flux would) creates it; dsroll waits for it and records it as stable"
grep -n "updateStrategy" -A1 rendered/gitops/dsroll-gitops/node-exporter-general.yaml
apply
run dsroll rollout gitops --wait-applied --timeout 2m --yes

step "13. a new version is merged and applied: no pod restarts (OnDelete); dsroll conducts it in steps"
write_env v1.9.0 "" && dsroll render gitops >/dev/null && commit "gitops: node-exporter v1.9.0"
apply
run dsroll plan gitops
run dsroll rollout gitops --wait-applied --timeout 2m --yes

step "14. a bad version, applied: caught on the canary, paused; reverted in git; applied again; conducted back"
write_env v1.9.1 "sandbox.dsroll.io/behaviour: crash" && dsroll render gitops >/dev/null
commit "gitops: node-exporter v1.9.1 (crashes)"
apply
run dsroll rollout gitops --wait-applied --timeout 2m --yes || echo "exit code $? (1: stopped on the canary, nothing else touched)"
run dsroll rollback gitops --git-revert
run git log --oneline -3
apply
run dsroll rollout gitops --wait-applied --timeout 2m --yes
run dsroll history gitops
echo "The scratch GitOps project is $work."
