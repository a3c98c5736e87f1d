"""The names and label values dsroll generates, and the API server's limits on them.

Every object dsroll creates is named after the environment file's names, so every such
name is checked here, when the file is read, rather than refused by the server halfway
through a rollout. What the server enforces (Kubernetes 1.35, apimachinery validation):

* a DaemonSet, Lease, ConfigMap or ControllerRevision name is a DNS-1123 subdomain,
  at most 253 characters;
* a label value is at most 63 characters of ``[A-Za-z0-9._-]``, alphanumeric at both ends.

What the DaemonSet controller derives from a DaemonSet's name imposes nothing stricter:
its pods get ``generateName: <name>-``, which the server truncates to 58 characters before
adding 5 random ones, and its ControllerRevisions are named ``<name>-<hash>`` with the
name cut to 223 characters first (``controller.ControllerRevisionName``). The 63 on
variant names is dsroll's own rule, not the server's: a variant name is a DNS label,
like the workload and class names it joins, so it can serve wherever a label value or a
DNS label is wanted (its workload and class do, as labels).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable

from dsroll.labels import LABEL_CLASS, LABEL_ENV, LABEL_WORKLOAD

DNS_LABEL_MAX = 63
"""RFC 1123 label: namespaces, workload, class and environment names, variant names."""
DNS_SUBDOMAIN_MAX = 253
"""RFC 1123 subdomain: names of DaemonSets, Leases, ConfigMaps and ControllerRevisions."""
LABEL_VALUE_MAX = 63
VARIANT_NAME_MAX = DNS_LABEL_MAX
LEASE_PREFIX = "dsroll-"
BACKUP_PREFIX = "dsroll-backup-"
_BACKUP_WORKLOAD_MAX = 200  # keeps the backup name a subdomain whatever the workload name

DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


def variant_name(workload: str, cls: str) -> str:
    return f"{workload}-{cls}"


def lease_name(subject: str) -> str:
    """The Lease that keeps one rollout per variant (or per replacement) at a time."""
    return LEASE_PREFIX + subject


def replacement_lease_subject(workload: str) -> str:
    return f"replace-{workload}"


def backup_name(workload: str, source_uids: Iterable[str]) -> str:
    """Deterministic in what is replaced, so a plan can name it and a resumed run finds it."""
    digest = hashlib.sha1(",".join(sorted(source_uids)).encode()).hexdigest()[:8]
    return f"{BACKUP_PREFIX}{workload[:_BACKUP_WORKLOAD_MAX]}-{digest}"


def is_dns_label(name: str) -> bool:
    return len(name) <= DNS_LABEL_MAX and bool(DNS_LABEL.match(name))


def is_label_value(value: str) -> bool:
    return len(value) <= LABEL_VALUE_MAX and bool(LABEL_VALUE.match(value))


def is_dns_subdomain(name: str) -> bool:
    return len(name) <= DNS_SUBDOMAIN_MAX and bool(DNS_SUBDOMAIN.match(name))


def variant_problem(environment: str, workload: str, cls: str) -> str | None:
    """What the API server (or dsroll's own rule) would refuse among the names one variant
    generates, as one line naming the name and its limit; None when all are fine."""
    variant = variant_name(workload, cls)
    if not is_dns_label(variant):
        return (
            f"variant name {variant!r} ({len(variant)} characters) is not a DNS label "
            f"(lowercase a-z, 0-9, '-', at most {VARIANT_NAME_MAX})"
        )
    labels = {LABEL_ENV: environment, LABEL_WORKLOAD: workload, LABEL_CLASS: cls}
    for key, value in labels.items():
        if not is_label_value(value):
            return f"label {key}={value!r} is not a label value (at most {LABEL_VALUE_MAX}: A-Z, a-z, 0-9, '-_.')"
    subdomains = {
        "Lease": lease_name(variant),
        "replacement Lease": lease_name(replacement_lease_subject(workload)),
        "backup ConfigMap": backup_name(workload, ()),
    }
    for what, name in subdomains.items():
        if not is_dns_subdomain(name):
            return f"{what} name {name!r} is not a DNS subdomain (at most {DNS_SUBDOMAIN_MAX})"
    return None
