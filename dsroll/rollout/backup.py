"""The backup of an orphan replacement: the old objects, their revisions, and the record.

One ConfigMap per replacement, in the workload's namespace, named by ``orphans.backup_name``
and labelled ``dsroll.io/backup-of: <workload>``; its data holds the old DaemonSets and
ControllerRevisions (YAML ``List``s), its annotation ``dsroll.io/replacement`` the record.
A local file with the same objects is written first. Nothing is deleted before both exist,
and together with the record they always suffice to continue or to restore.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dsroll import yamlio
from dsroll.labels import (
    BACKUP_LABEL,
    LABEL_ENV,
    MANAGED_BY,
    MANAGER,
    RECORD_ANNOTATION,
    REQUEST_ANNOTATION,
    ROLLOUT_ANNOTATION,
    TEMPLATE_GENERATION_ANNOTATION,
)
from dsroll.orphans import Record, read_record
from dsroll.rollout import revisions as revs

if TYPE_CHECKING:
    from dsroll.kube import Kube

DAEMONSETS, REVISIONS = "daemonsets.yaml", "controllerrevisions.yaml"
#: Set by the API server; a recreated object must not carry them.
_SERVER_FIELDS = ("uid", "resourceVersion", "creationTimestamp", "generation", "managedFields", "deletionTimestamp",
                  "deletionGracePeriodSeconds", "selfLink", "finalizers")  # fmt: skip
_SERVER_ANNOTATIONS = (TEMPLATE_GENERATION_ANNOTATION, ROLLOUT_ANNOTATION, REQUEST_ANNOTATION)


def default_backup_dir() -> Path:
    """``$DSROLL_BACKUP_DIR``, else ``$XDG_STATE_HOME/dsroll/backups`` (~/.local/state/…)."""
    if os.environ.get("DSROLL_BACKUP_DIR"):
        return Path(os.environ["DSROLL_BACKUP_DIR"])
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "dsroll" / "backups"


def records(kube: Kube, namespace: str, workload: str) -> list[tuple[dict[str, Any], Record]]:
    """Every replacement recorded for a workload in a namespace: (ConfigMap, record)."""
    out = []
    for cm in kube.configmaps.list(namespace, f"{BACKUP_LABEL}={workload}"):
        record = read_record(cm)
        if record is not None:
            out.append((cm, record))
    return out


def saved_objects(configmap: Mapping[str, Any], key: str = DAEMONSETS) -> dict[str, dict[str, Any]]:
    """The objects saved in a backup ConfigMap (its DaemonSets, or its ``key``), by name."""
    text = (configmap.get("data") or {}).get(key) or ""
    items = (yamlio.load_plain(text) or {}).get("items") or []
    return {obj["metadata"]["name"]: obj for obj in items if isinstance(obj, dict)}


def as_list(objects: Sequence[Mapping[str, Any]]) -> str:
    """Objects as one YAML ``List`` (what `kubectl get -o yaml` prints for several)."""
    return yamlio.dump({"apiVersion": "v1", "kind": "List", "items": list(objects)})


def owned_revisions(kube: Kube, daemonset: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The ControllerRevisions a DaemonSet owns."""
    meta = daemonset["metadata"]
    found = kube.revisions.list(meta["namespace"], revs.selector_string(daemonset["spec"]["selector"]))
    # listed items carry no kind of their own; saved ones must, so that `kubectl create -f` takes them
    return [
        {"apiVersion": "apps/v1", "kind": "ControllerRevision", **cr} for cr in found if revs.owned_by(cr, meta["uid"])
    ]


class Backup:
    def __init__(self, kube: Kube, namespace: str, name: str) -> None:
        self.kube = kube
        self.namespace = namespace
        self.name = name
        self.objects: dict[str, dict[str, Any]] = {}
        self.revisions: list[dict[str, Any]] = []

    def load(self) -> Record | None:
        """The record, with the saved objects; None when there is no backup yet."""
        cm = self.kube.configmaps.get(self.namespace, self.name)
        if cm is None:
            return None
        self.objects = saved_objects(cm)
        self.revisions = list(saved_objects(cm, REVISIONS).values())
        return read_record(cm)

    def write(self, record: Record) -> Record:
        self.kube.configmaps.annotate(self.namespace, self.name, {RECORD_ANNOTATION: record.to_json()})
        return record

    def create(
        self,
        objects: Sequence[dict[str, Any]],
        history: Sequence[dict[str, Any]],
        record: Record,
        file: Path,
        *,
        environment: str,
    ) -> None:
        """The local file, then the ConfigMap with the record's first stage."""
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_text(as_list([*objects, *history]))
        self.kube.configmaps.create(
            self.namespace,
            self.name,
            labels={BACKUP_LABEL: record.workload, MANAGED_BY: MANAGER, LABEL_ENV: environment},
            annotations={RECORD_ANNOTATION: record.to_json()},
            data={DAEMONSETS: as_list(objects), REVISIONS: as_list(history)},
        )
        self.objects = {obj["metadata"]["name"]: obj for obj in objects}
        self.revisions = list(history)

    def original(self, name: str) -> dict[str, Any]:
        """A saved DaemonSet as it can be created again (KeyError when it is not saved)."""
        obj = copy.deepcopy(self.objects[name])
        obj.pop("status", None)
        meta = obj["metadata"]
        for key in _SERVER_FIELDS:
            meta.pop(key, None)
        meta["annotations"] = {k: v for k, v in (meta.get("annotations") or {}).items() if k not in _SERVER_ANNOTATIONS}
        obj.setdefault("apiVersion", "apps/v1")
        obj.setdefault("kind", "DaemonSet")
        return obj
