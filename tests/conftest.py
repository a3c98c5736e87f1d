"""Shared test helpers: a throwaway project (environment file + templates) on disk."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

TEMPLATE = """\
apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: {{ workload.name }}
spec:
  selector:
    matchLabels: {app: "{{ workload.name }}"}
  template:
    metadata:
      labels: {app: "{{ workload.name }}"}
    spec:
      containers:
        - name: agent
          image: "{{ values.image }}:{{ values.tag }}"
"""

ENV = """\
apiVersion: dsroll.io/v1alpha1
kind: Environment
metadata: {name: test}
cluster: {namespace: agents}
hardwareClasses:
  - name: gpu
    nodeSelector: {gpu: "true"}
  - name: arm64
    matchExpressions: [{key: kubernetes.io/arch, operator: In, values: [arm64]}]
  - name: general
    default: true
workloads:
  - name: agent
    template: templates/agent.yaml.j2
    values: {image: example.com/agent, tag: "1.0"}
    classValues: {arm64: {tag: "1.0-arm64"}}
"""


@pytest.fixture
def make_project(tmp_path: Path) -> Callable[..., Path]:
    """Write a project with the given environment text and templates; returns its root."""

    def make(env: str = ENV, templates: dict[str, str] | None = None, name: str = "test") -> Path:
        (tmp_path / "environments").mkdir(exist_ok=True)
        (tmp_path / "templates").mkdir(exist_ok=True)
        (tmp_path / "environments" / f"{name}.yaml").write_text(textwrap.dedent(env))
        for rel, text in (templates or {"agent.yaml.j2": TEMPLATE}).items():
            (tmp_path / "templates" / rel).write_text(text)
        return tmp_path

    return make
