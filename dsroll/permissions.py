"""What each command may ask of the cluster, as RBAC: one list behind the shipped roles and the preflight.

Every REST call dsroll makes is in ``kube/resources.py``; this module says which of them
each command can reach, as (verb, API group, resource) and where: in every namespace the
environment's workloads live in, or cluster-wide (nodes and namespaces are cluster-scoped;
a live diff lists dsroll's DaemonSets in all namespaces, to find variants an environment no
longer renders, wherever they are).

The same table makes two things, so they cannot drift apart:

* ``manifests``: the ServiceAccounts, Roles, RoleBindings, ClusterRole and ClusterRoleBinding
  of a CI deployer and a read-only reviewer, for one environment (``dsroll rbac ENV``,
  written by ``dsroll init``);
* ``preflight``: before a command changes anything, one SelfSubjectAccessReview per needed
  (verb, resource, namespace); a denial is exit 2 naming the verb and resource, so a run
  never stops half-way on a 403 it could have foreseen.

A command needs everything it *may* do, not only what this run will do: a rollout can turn
into an orphan replacement or a rollback on failure, and finding that out at a 403 after
half the nodes were replaced is what the preflight is for.

One permission depends on the environment: ``create namespaces`` (cluster-wide), granted to
the deployer only when the environment says ``cluster.createNamespace: true``, and asked
for only when a rollout is about to create a namespace (known before anything is written).
No role is ever granted ``delete`` on namespaces. A few reads only sharpen what a
command says (``OPTIONAL``: the health gate's look at a stuck pod's Events and at a node
that got no new pod): the deployer is granted them, the preflight does not ask, and a
command that meets a 403 on them warns and goes on.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dsroll.errors import ClusterError, DsrollError

if TYPE_CHECKING:  # the client is passed in
    from dsroll.kube import Kube

VERBS = ("get", "list", "watch", "create", "update", "patch", "delete")
CLUSTER_SCOPED = frozenset({"nodes", "namespaces"})
ROLES = ("deployer", "reviewer")


@dataclass(frozen=True)
class Access:
    """One verb on one resource: in each of the environment's namespaces, or cluster-wide."""

    verb: str
    group: str  # "" is the core group
    resource: str
    cluster_wide: bool = False

    @property
    def qualified(self) -> str:
        """kubectl's name for the resource: ``daemonsets.apps``, ``pods``."""
        return f"{self.resource}.{self.group}" if self.group else self.resource

    def where(self, namespace: str | None) -> str:
        if self.resource in CLUSTER_SCOPED:
            return "(cluster-scoped)"
        return "in all namespaces" if namespace is None else f"in namespace {namespace}"

    def sort_key(self) -> tuple[bool, str, str, int]:
        return (not self.cluster_wide, self.group, self.resource, VERBS.index(self.verb))


def _in_namespaces(group: str, resource: str, *verbs: str) -> frozenset[Access]:
    return frozenset(Access(verb, group, resource) for verb in verbs)


def _cluster_wide(group: str, resource: str, *verbs: str) -> frozenset[Access]:
    return frozenset(Access(verb, group, resource, cluster_wide=True) for verb in verbs)


NODES = _cluster_wide("", "nodes", "list")
HISTORY = (
    _in_namespaces("apps", "daemonsets", "get")
    | _in_namespaces("apps", "controllerrevisions", "list")
    | _in_namespaces("", "configmaps", "get")  # applier: external keeps the rollout record in a ConfigMap
)
STATUS = HISTORY | _in_namespaces("", "pods", "list") | _in_namespaces("", "configmaps", "list")
WATCH = (
    STATUS
    | _in_namespaces("apps", "daemonsets", "list", "watch")  # follow the rollout's DaemonSets
    | _in_namespaces("coordination.k8s.io", "leases", "get")  # is its runner still there
)
DIFF = (
    STATUS  # the live objects, their pods and revisions, recorded orphan replacements
    | NODES  # which class each node falls into, for the replacements a diff implies
    | _cluster_wide("apps", "daemonsets", "list")  # variants no longer rendered, in any namespace
    | _cluster_wide("", "namespaces", "get")  # a namespace that is not there yet
)
CREATE_NAMESPACES = _cluster_wide("", "namespaces", "create")
"""``cluster.createNamespace: true``: a rollout creates a namespace that is missing."""
DRY_RUN = _in_namespaces("apps", "daemonsets", "patch", "create")
"""A live diff's server-side dry-run apply: RBAC authorises it as patch (and create for a new variant)."""
PLAN = DIFF | DRY_RUN
CONTROL = (
    _in_namespaces("apps", "daemonsets", "get", "patch")  # applier: dsroll: the state annotation
    | _in_namespaces("", "configmaps", "get", "create", "patch")  # applier: external: the state's ConfigMap
    | _in_namespaces("coordination.k8s.io", "leases", "get", "create", "update", "delete")
)
FOLLOW = (
    _cluster_wide("", "nodes", "list", "watch")  # nodes unready, held, deleted or joining under a step
    | _in_namespaces("apps", "daemonsets", "list", "watch")  # a second hand on the spec stops the run
)
RUN = (
    PLAN
    | CONTROL
    | FOLLOW
    | _in_namespaces("apps", "daemonsets", "list", "watch", "delete")  # wait on it; prune; orphan it
    | _in_namespaces("apps", "controllerrevisions", "patch", "delete")  # record the commit; restore
    | _in_namespaces("", "pods", "watch", "patch", "delete")  # replace node by node; relabel orphans
    | _in_namespaces("", "configmaps", "get", "create", "patch")  # orphan replacement backups
    | _in_namespaces("", "events", "create")  # what happened, for kubectl describe
)
RESTART = (
    PLAN  # the plan, whose live diff refuses a template change
    | CONTROL  # the state annotation, the Lease
    | FOLLOW
    | _in_namespaces("", "pods", "watch", "delete")  # replace node by node
    | _in_namespaces("", "events", "create")
)
"""A rollout without applying: no DaemonSet created or deleted, no revision or pod label changed, no backup."""

GATE_READS = _in_namespaces("", "events", "list") | _cluster_wide("", "nodes", "get")
"""What the health gate reads to name why a new pod is stuck: the pod's Events (one list by
``involvedObject.uid``), and the Node of a node that got no new pod (a taint or selector the
DaemonSet controller will not place a pod over). Optional in effect (``OPTIONAL``)."""

COMMANDS: Mapping[str, frozenset[Access]] = {
    "render": frozenset(),
    "nodes": NODES,
    "status": STATUS,
    "status-watch": WATCH,
    "history": HISTORY,
    "diff": DIFF,
    "plan": PLAN,
    "rollout": RUN,
    "resume": RUN,
    "rollback": RUN,
    "restart": RESTART,
    "pause": CONTROL,
    "abort": CONTROL,
}
"""What each command needs; ``diff --against live`` also uses ``DRY_RUN`` when it is allowed."""

OPTIONAL: Mapping[str, frozenset[Access]] = dict.fromkeys(("rollout", "resume", "rollback", "restart"), GATE_READS)
"""What a command uses where it is allowed and does without where not: granted to the
deployer, never asked by the preflight (a denial is a warning when it is met, not exit 2)."""

GRANTS: Mapping[str, frozenset[Access]] = {
    "deployer": frozenset().union(*COMMANDS.values(), *OPTIONAL.values()),
    "reviewer": WATCH | HISTORY | NODES | DIFF,
}
"""What each shipped role grants: the deployer runs every command; the reviewer only reads."""


def grants(role: str, *, create_namespace: bool = False) -> frozenset[Access]:
    """What ``role`` is granted for one environment: with ``cluster.createNamespace: true`` the
    deployer may also create namespaces."""
    return GRANTS[role] | (CREATE_NAMESPACES if create_namespace and role == "deployer" else frozenset())


# --- the shipped manifests ---------------------------------------------------------------


def rules(grants: Iterable[Access], *, cluster_wide: bool) -> list[dict[str, Any]]:
    """PolicyRules: one per (group, resource), its verbs in kubectl's order."""
    by_resource: dict[tuple[str, str], set[str]] = {}
    for access in grants:
        if access.cluster_wide == cluster_wide:
            by_resource.setdefault((access.group, access.resource), set()).add(access.verb)
    return [
        {"apiGroups": [group], "resources": [resource], "verbs": sorted(verbs, key=VERBS.index)}
        for (group, resource), verbs in sorted(by_resource.items())
    ]


def account_name(environment: str, role: str) -> str:
    """The ServiceAccount, and every Role and binding of it: ``dsroll-<environment>-<role>``."""
    return f"dsroll-{environment}-{role}"


def manifests(
    environment: str, home: str, namespaces: Sequence[str], role: str, *, create_namespace: bool = False
) -> list[dict[str, Any]]:
    """Everything ``kubectl apply -f`` needs to give ``role`` for an environment.

    The ServiceAccount lives in ``home`` (the environment's namespace); a Role and a
    RoleBinding in each of ``namespaces`` (where its workloads live); a ClusterRole and
    ClusterRoleBinding for what only exists cluster-wide (``create_namespace``: the
    environment's ``cluster.createNamespace``).
    """
    granted = grants(role, create_namespace=create_namespace)
    name = account_name(environment, role)
    labels = {"app.kubernetes.io/managed-by": "dsroll", "dsroll.io/environment": environment, "dsroll.io/role": role}
    subject = {"kind": "ServiceAccount", "name": name, "namespace": home}
    docs: list[dict[str, Any]] = [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name, "namespace": home, "labels": labels}}
    ]
    for namespace in sorted(set(namespaces)):
        meta = {"name": name, "namespace": namespace, "labels": labels}
        docs.append(
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "Role",
                "metadata": meta,
                "rules": rules(granted, cluster_wide=False),
            }
        )
        docs.append(
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "RoleBinding",
                "metadata": meta,
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
                "subjects": [subject],
            }
        )
    cluster_meta = {"name": name, "labels": labels}
    docs.append(
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": cluster_meta,
            "rules": rules(granted, cluster_wide=True),
        }
    )
    docs.append(
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": cluster_meta,
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
            "subjects": [subject],
        }
    )
    return docs


# --- the preflight ---------------------------------------------------------------------


@dataclass(frozen=True)
class Check:
    """One question for the API server: may I ``access`` in ``namespace`` (None: cluster-wide)?"""

    access: Access
    namespace: str | None

    def __str__(self) -> str:
        return f"{self.access.verb} {self.access.qualified} {self.access.where(self.namespace)}"


def checks(needed: Iterable[Access], namespaces: Iterable[str]) -> list[Check]:
    """Each access in each namespace (once, cluster-wide ones), in a stable order."""
    spaces = sorted(set(namespaces))
    found = []
    for access in sorted(needed, key=Access.sort_key):
        for namespace in [None] if access.cluster_wide else spaces:
            found.append(Check(access, namespace))
    return found


def granted(rules: Iterable[Mapping[str, Any]], access: Access) -> bool:
    """Whether a SelfSubjectRulesReview's resource rules allow ``access`` on every object of
    its kind (a rule limited to some ``resourceNames`` does not). Pure."""
    for rule in rules:
        if rule.get("resourceNames"):
            continue
        if (
            {access.verb, "*"} & set(rule.get("verbs") or ())
            and {access.group, "*"} & set(rule.get("apiGroups") or ())
            and {access.resource, "*"} & set(rule.get("resources") or ())
        ):
            return True
    return False


def denied(kube: Kube, wanted: Sequence[Check], warn: Callable[[str], None]) -> list[Check]:
    """The checks the API server denies.

    A namespace's checks are answered by one SelfSubjectRulesReview (its rules, matched
    here); cluster-wide checks, and those of a namespace whose rules come back incomplete,
    by one SelfSubjectAccessReview each, asked concurrently. Where the server cannot be
    asked (an authorizer that refuses both reviews, which every conformant cluster grants
    to all), ``warn`` says so and nothing is denied: the command's own requests will meet
    RBAC anyway, only later.
    """
    by_namespace: dict[str, list[Check]] = {}
    for check in wanted:
        if check.namespace is not None:
            by_namespace.setdefault(check.namespace, []).append(check)
    answers: dict[Check, bool] = {}

    def ask(check: Check) -> bool:
        a = check.access
        return kube.access.allowed(a.verb, a.group, a.resource, check.namespace)

    try:
        with ThreadPoolExecutor(max_workers=8) as pool:
            wide = [check for check in wanted if check.namespace is None]
            asked = pool.map(ask, wide)  # asked while the rules reviews are read: one round trip fewer
            for namespace, found in by_namespace.items():
                rules, incomplete = kube.access_rules.rules(namespace)
                for check in found:
                    allowed = granted(rules, check.access)
                    if allowed or not incomplete:  # what an incomplete answer leaves out is asked below
                        answers[check] = allowed
            answers.update(zip(wide, asked, strict=True))
            rest = [check for check in wanted if check not in answers]
            answers.update(zip(rest, pool.map(ask, rest), strict=True))
    except ClusterError as exc:
        warn(f"RBAC preflight skipped: cannot ask the API server ({exc})")
        return []
    return [check for check in wanted if not answers[check]]


def refusal(command: str, found: Sequence[Check]) -> str:
    """One line: the first denial in full, then how many more (and which)."""
    first = f"RBAC preflight: cannot {found[0]} (needed by {command})"
    if len(found) == 1:
        return first
    rest = "; ".join(str(c) for c in found[1:4]) + (f"; … ({len(found) - 4} more)" if len(found) > 4 else "")
    return f"{first}; also denied: {rest}"


def preflight(
    kube: Kube,
    command: str,
    namespaces: Iterable[str],
    *,
    warn: Callable[[str], None],
    needed: frozenset[Access] | None = None,
) -> None:
    """Refuse (exit 2) before anything is changed when the caller lacks a permission ``command``
    needs (``needed``: these instead of everything the command may need)."""
    found = denied(kube, checks(COMMANDS[command] if needed is None else needed, namespaces), warn)
    if found:
        raise DsrollError(refusal(command, found))


@contextmanager
def preflight_beside(
    kube: Kube, command: str, namespaces: Iterable[str], *, warn: Callable[[str], None]
) -> Iterator[Callable[[], None]]:
    """``preflight``, asked while the block reads what it needs: the block must change nothing
    until it has called what this yields (the preflight's verdict: a refusal raises). Leaving
    the block waits for the verdict, and a refusal is raised in place of whatever the block
    raised, as if the preflight had come first."""
    namespaces = tuple(namespaces)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="preflight") as pool:
        verdict = pool.submit(preflight, kube, command, namespaces, warn=warn)
        try:
            yield verdict.result
        except Exception:
            refused = verdict.exception()
            if refused is not None:
                raise refused from None
            raise
        verdict.result()


def dry_run_denied(kube: Kube, namespaces: Iterable[str], *, warn: Callable[[str], None]) -> list[Check]:
    """What a live diff's server-side dry-run would be denied (empty: it may run)."""
    return denied(kube, checks(DRY_RUN, namespaces), warn)
