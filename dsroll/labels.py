"""Every label and annotation key dsroll writes or reads, in one place.

These keys are dsroll's contract with the cluster: a variant is found by its labels, a
rollout resumes from its annotation, a replacement from its backup's. Keeping them here
means a reader sees the whole contract at once, and a rename cannot miss a reader.
Pure: strings only.
"""

from __future__ import annotations

# --- on every variant and its pods (DESIGN: "Variant") ---------------------------------

MANAGED_BY = "app.kubernetes.io/managed-by"
#: The value of ``MANAGED_BY`` on everything dsroll renders or creates.
MANAGER = "dsroll"
LABEL_ENV = "dsroll.io/environment"
LABEL_WORKLOAD = "dsroll.io/workload"
LABEL_CLASS = "dsroll.io/class"
#: The labels that say "a dsroll variant": removed from pods handed back to an object without them.
IDENTITY = (MANAGED_BY, LABEL_ENV, LABEL_WORKLOAD, LABEL_CLASS)

# --- the rollout's record on the DaemonSet ----------------------------------------------

#: The rollout state (JSON, ``rollout/state.py``), written before each transition is acted on.
ROLLOUT_ANNOTATION = "dsroll.io/rollout"
#: A pause or abort asked for from another process (``dsroll pause``/``abort``).
REQUEST_ANNOTATION = "dsroll.io/rollout-request"
#: On the ConfigMap that keeps a variant's rollout record under ``applier: external``
#: (``rollout/store.py``): the variant's name.
STORE_LABEL = "dsroll.io/rollout-of"
#: On a ControllerRevision: the git commit that first produced it (shown by ``history``).
COMMIT_ANNOTATION = "dsroll.io/commit"

# --- on nodes, set by operators ---------------------------------------------------------

#: ``dsroll.io/hold=true`` keeps a node on the revision it runs: every rollout skips it.
HOLD_LABEL = "dsroll.io/hold"

# --- orphan replacement backups ---------------------------------------------------------

#: On the backup ConfigMap: the workload whose replacement it records.
BACKUP_LABEL = "dsroll.io/backup-of"
#: On the backup ConfigMap: the replacement's progress (JSON, ``orphans.Record``).
RECORD_ANNOTATION = "dsroll.io/replacement"

# --- set by Kubernetes ------------------------------------------------------------------

#: On daemon pods and ControllerRevisions: the revision a pod was made from.
REVISION_LABEL = "controller-revision-hash"
#: On daemon pods, set by the DaemonSet controller; a stale value would make a new owner
#: count the pod as updated.
TEMPLATE_GENERATION = "pod-template-generation"
#: On DaemonSets, set by the DaemonSet controller.
TEMPLATE_GENERATION_ANNOTATION = "deprecated.daemonset.template.generation"
#: On objects applied by ``kubectl apply`` (client-side).
LAST_APPLIED_ANNOTATION = "kubectl.kubernetes.io/last-applied-configuration"
#: On nodes: the zone a node's turn is spread across.
ZONE_LABEL = "topology.kubernetes.io/zone"
#: On nodes: every node has it, so ``Exists`` on it matches every node.
HOSTNAME_LABEL = "kubernetes.io/hostname"
