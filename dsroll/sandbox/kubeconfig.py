"""Admin kubeconfigs for a sandbox.

Certificates are embedded (``*-data``) rather than referenced by path, so the file keeps
working when copied elsewhere; it stops working when the sandbox is downed, because the
CA dies with it. A kubeconfig the user points ``--kubeconfig`` at may hold other
clusters: ours is merged into it, never written over it.
"""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Any

import yaml

from dsroll.errors import SandboxError
from dsroll.sandbox.certs import Pki


def context_name(sandbox: str) -> str:
    return f"dsroll-sandbox-{sandbox}"


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def admin_kubeconfig(sandbox: str, server: str, pki: Pki) -> dict[str, Any]:
    """A complete kubeconfig whose cluster, user and context are all named after the sandbox."""
    ctx = context_name(sandbox)
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "preferences": {},
        "clusters": [
            {"name": ctx, "cluster": {"server": server, "certificate-authority-data": _b64(pki.ca_cert)}},
        ],
        "users": [
            {
                "name": f"{ctx}-admin",
                "user": {
                    "client-certificate-data": _b64(pki.admin_cert),
                    "client-key-data": _b64(pki.admin_key),
                },
            }
        ],
        "contexts": [{"name": ctx, "context": {"cluster": ctx, "user": f"{ctx}-admin"}}],
        "current-context": ctx,
    }


def merge(existing: dict[str, Any], ours: dict[str, Any]) -> dict[str, Any]:
    """``existing`` with our cluster, user and context replaced or added, and ours current."""
    merged = dict(existing) if existing else {"apiVersion": "v1", "kind": "Config", "preferences": {}}
    for section in ("clusters", "users", "contexts"):
        names = {item["name"] for item in ours[section]}
        kept = [item for item in merged.get(section) or [] if item.get("name") not in names]
        merged[section] = kept + ours[section]
    merged["current-context"] = ours["current-context"]
    return merged


def write(path: Path, config: dict[str, Any], merge_existing: bool = False) -> None:
    """Write atomically with mode 0600 (it holds a private key)."""
    data = config
    if merge_existing and path.exists():
        try:
            loaded = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise SandboxError(f"{path} exists but is not a kubeconfig we can merge into: {exc}") from exc
        if not isinstance(loaded, dict):
            raise SandboxError(f"{path} exists but is not a kubeconfig we can merge into")
        data = merge(loaded, config)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        yaml.safe_dump(data, out, sort_keys=False)
    tmp.replace(path)


def remove_from(path: Path, sandbox: str) -> bool:
    """Drop a downed sandbox's entries from a kubeconfig we merged into; True if changed."""
    try:
        loaded = yaml.safe_load(path.read_text()) or {}
    except (FileNotFoundError, yaml.YAMLError):
        return False
    if not isinstance(loaded, dict):
        return False
    ctx = context_name(sandbox)
    names = {ctx, f"{ctx}-admin"}
    changed = False
    for section in ("clusters", "users", "contexts"):
        items = loaded.get(section) or []
        kept = [item for item in items if item.get("name") not in names]
        changed = changed or len(kept) != len(items)
        loaded[section] = kept
    if not changed:
        return False
    if loaded.get("current-context") == ctx:
        loaded["current-context"] = ""
    if not loaded["contexts"]:
        path.unlink()
        return True
    write(path, loaded)
    return True
