"""Render 50 workloads x 10 hardware classes and print the time (target: under 1 s).

Run: `make bench` or `.venv/bin/python bench/render_bench.py [--workloads N --classes M]`.
Timing covers parsing the environment, the class algebra and rendering every variant;
writing files is timed separately.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from dsroll.gitsource import FsSource
from dsroll.render import load_environment, render_environment
from dsroll.rendered import sync

ROOT = Path(__file__).resolve().parents[1]


def make_environment(workloads: int, classes: int) -> str:
    lines = [
        "apiVersion: dsroll.io/v1alpha1",
        "kind: Environment",
        "metadata: {name: bench}",
        "cluster: {namespace: bench}",
        "hardwareClasses:",
    ]
    for i in range(classes - 1):
        lines += [
            f"  - name: class{i}",
            f"    matchExpressions: [{{key: pool, operator: In, values: [pool{i}]}},"
            f" {{key: zone{i % 3}, operator: Exists}}]",
        ]
    lines += ["  - name: general", "    default: true", "workloads:"]
    templates = ["fluent-bit", "node-exporter"]
    for i in range(workloads):
        lines += [
            f"  - name: agent{i}",
            f"    template: templates/{templates[i % 2]}.yaml.j2",
            "    values:",
            "      image: example.com/agent",
            f'      tag: "1.{i}"',
            "      parser: cri",
            "      priorityClass: system-node-critical",
            "      port: 9100",
            "      collectors: [systemd]",
            "      resources: {requests: {cpu: 10m, memory: 16Mi}}",
        ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workloads", type=int, default=50)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        shutil.copytree(ROOT / "templates", root / "templates")
        (root / "environments").mkdir()
        (root / "environments/bench.yaml").write_text(make_environment(args.workloads, args.classes))
        source = FsSource(root)
        times = []
        for _ in range(args.repeat):
            started = time.perf_counter()
            env = load_environment(source, "environments/bench.yaml")
            result = render_environment(env, source)
            times.append(time.perf_counter() - started)
        started = time.perf_counter()
        sync(root, result, check=False)
        write = time.perf_counter() - started
    print(
        f"render {args.workloads} workloads x {args.classes} classes = {len(result.variants)} variants: "
        f"median {statistics.median(times):.3f}s, best {min(times):.3f}s over {args.repeat} runs "
        f"(writing the files: {write:.3f}s)"
    )


if __name__ == "__main__":
    main()
