"""``dsroll sandbox``: thin typer commands over ``dsroll.sandbox.cluster``."""

from __future__ import annotations

import dataclasses
import json
import shlex
import sys
from pathlib import Path
from typing import Annotated

import typer

from dsroll.cli.helptext import epilog
from dsroll.errors import SandboxError
from dsroll.sandbox.nodes import DEFAULT_CLASSES

app = typer.Typer(
    help=(
        "A local Kubernetes cluster for trying dsroll: real kube-apiserver, controller-manager, "
        "scheduler and etcd built from Go modules, with kwok playing the nodes. No Docker needed."
    ),
    no_args_is_help=True,
)

NameOpt = Annotated[str, typer.Option("--name", metavar="NAME", help="Sandbox name; several can run at once.")]


def _fail(exc: SandboxError) -> typer.Exit:
    typer.echo(f"error: {exc}", err=True)
    return typer.Exit(exc.exit_code)


def _progress(message: str) -> None:
    typer.echo(message, err=True)


@app.command(
    epilog=epilog(
        [
            ("12 fake nodes in three hardware classes (the first run builds ~15 min)", "sandbox up"),
            (
                "A second one, its context merged into your kubeconfig",
                "sandbox up --name ci --nodes 30 --kubeconfig ~/.kube/config",
            ),
        ],
        "2 could not build or start it",
    )
)
def up(
    name: NameOpt = "default",
    nodes: Annotated[int, typer.Option("--nodes", metavar="N", min=0, help="Number of fake (kwok) nodes.")] = 12,
    classes: Annotated[
        str,
        typer.Option(
            "--classes", metavar="NAME,NAME...", help="Comma-separated hardware classes to split the nodes into."
        ),
    ] = ",".join(DEFAULT_CLASSES),
    kubeconfig: Annotated[
        Path | None,
        typer.Option("--kubeconfig", metavar="PATH", help="Also merge the admin context into this kubeconfig file."),
    ] = None,
) -> None:
    """Start a sandbox (builds the binaries on first use) and print how to use it."""
    try:
        from dsroll.sandbox import cluster  # heavy (certificates, processes): only when used

        info = cluster.up(
            name=name,
            nodes=nodes,
            classes=[c for c in classes.split(",") if c.strip()],
            kubeconfig=kubeconfig,
            progress=_progress,
        )
    except SandboxError as exc:
        raise _fail(exc) from exc
    used = kubeconfig.expanduser().absolute() if kubeconfig else info.kubeconfig
    typer.echo(f"sandbox {info.name!r} is up: {info.server}, {info.node_count} kwok nodes")
    typer.echo(f"kubeconfig: {used} (context {info.context})")
    typer.echo(f"  export KUBECONFIG={shlex.quote(str(used))}")
    typer.echo(f"  {shlex.quote(str(info.kubectl))} --context {info.context} get nodes -L sandbox.dsroll.io/class")
    typer.echo(f"stop it with: dsroll sandbox down --name {shlex.quote(info.name)}")


@app.command(
    epilog=epilog([("Stop the sandbox named ci and delete its state", "sandbox down --name ci")], "2 could not stop it")
)
def down(name: NameOpt = "default") -> None:
    """Stop every process of a sandbox and delete its state."""
    try:
        from dsroll.sandbox import cluster

        existed = cluster.down(name)
    except SandboxError as exc:
        raise _fail(exc) from exc
    typer.echo(f"sandbox {name!r} {'stopped and removed' if existed else 'was not running'}")


@app.command(
    epilog=epilog(
        [
            ("Its processes, ports and kubeconfig", "sandbox status"),
            ("Point kubectl at it", "sandbox status -o json | jq -r .kubeconfig"),
        ],
        "1 not running",
        "2 bad input",
    )
)
def status(
    name: NameOpt = "default",
    output: Annotated[str, typer.Option("-o", "--output", metavar="text|json", help="Output format.")] = "text",
) -> None:
    """Show whether a sandbox runs, its processes, ports and kubeconfig (exit 1 if not running)."""
    if output not in ("text", "json"):
        typer.echo(f"error: --output must be text or json, not {output!r}", err=True)
        raise typer.Exit(2)
    try:
        from dsroll.sandbox import cluster

        st = cluster.status(name)
    except SandboxError as exc:
        raise _fail(exc) from exc
    if output == "json":
        json.dump(st.to_dict(), sys.stdout, indent=2)
        sys.stdout.write("\n")
    elif not st.exists:
        typer.echo(f"sandbox {name!r}: not found (state dir {st.state_dir})")
    else:
        typer.echo(f"sandbox {name!r}: {'running' if st.running else 'NOT running'} (phase {st.phase})")
        typer.echo(f"  server:     {st.server}")
        typer.echo(f"  kubeconfig: {st.kubeconfig} (context {st.context})")
        typer.echo(f"  nodes:      {st.node_count if st.node_count is not None else 'unknown'}")
        for comp in st.components:
            port = f":{comp.port}" if comp.port else ""
            state = "alive" if comp.alive else "DEAD"
            typer.echo(f"  {comp.name:<24} pid {comp.pid:<8} {state:<5} {port:<7} log {comp.log}")
    if not st.running:
        raise typer.Exit(1)


@app.command(
    epilog=epilog([("Build the binaries ahead of time (Go modules, ~15 min)", "sandbox build")], "2 the build failed")
)
def build() -> None:
    """Build (once) and cache the sandbox's binaries; print where they are."""
    from dsroll.sandbox.build import cache_root, ensure_binaries

    try:
        binaries = ensure_binaries()
    except SandboxError as exc:
        raise _fail(exc) from exc
    typer.echo(f"sandbox binaries cached under {cache_root()}:")
    for field_name, path in dataclasses.asdict(binaries).items():
        typer.echo(f"  {field_name.replace('_', '-'):<24} {path}")


fault_app = typer.Typer(
    help="Inject faults into a running sandbox: restart or pause a component, make a node misbehave.",
    no_args_is_help=True,
)
app.add_typer(fault_app, name="fault")


@fault_app.command(
    "restart",
    epilog=epilog(
        [("Restart the API server mid-rollout", "sandbox fault restart kube-apiserver")],
        "2 no such sandbox or component, or it did not come back",
    ),
)
def fault_restart(
    component: Annotated[
        str,
        typer.Argument(
            metavar="COMPONENT",
            help="etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kwok or node-agent.",
        ),
    ],
    name: NameOpt = "default",
) -> None:
    """Stop a component and start it again with the same command line, ports and data; wait until healthy."""
    from dsroll.sandbox import faults

    try:
        new = faults.restart(name, component)
    except SandboxError as exc:
        raise _fail(exc) from exc
    typer.echo(f"{component} restarted (pid {new.pid}) and healthy")


@fault_app.command(
    "pause",
    epilog=epilog(
        [
            ("Freeze the API server for 20 seconds", "sandbox fault pause 20"),
            ("Freeze etcd", "sandbox fault pause 10 --component etcd"),
        ],
        "2 no such sandbox or component",
    ),
)
def fault_pause(
    seconds: Annotated[float, typer.Argument(metavar="SECONDS", min=0, help="How long the process stays stopped.")],
    component: Annotated[
        str, typer.Option("--component", metavar="NAME", help="The process to stop.")
    ] = "kube-apiserver",
    name: NameOpt = "default",
) -> None:
    """SIGSTOP a component (the apiserver by default) for SECONDS, then SIGCONT; returns after the resume."""
    from dsroll.sandbox import faults

    try:
        faults.pause(name, seconds, component)
    except SandboxError as exc:
        raise _fail(exc) from exc
    typer.echo(f"{component} was stopped for {seconds:g}s and runs again")


@fault_app.command(
    "node",
    epilog=epilog(
        [
            ("Make a node NotReady", "sandbox fault node kwok-node-003 not-ready"),
            ("And well again", "sandbox fault node kwok-node-003 healthy"),
        ],
        "2 no such sandbox or node, or an unknown behaviour",
    ),
)
def fault_node(
    node: Annotated[str, typer.Argument(metavar="NODE", help="Node name.")],
    behaviour: Annotated[
        str,
        typer.Argument(
            metavar="BEHAVIOUR", help="not-ready, flapping, kubelet-gone, slow-start[=5s], slow-pull[=10s], or healthy."
        ),
    ],
    name: NameOpt = "default",
) -> None:
    """Set (or, with 'healthy', remove) a node's sandbox.dsroll.io/node-behaviour annotation."""
    from dsroll.sandbox import behaviours, faults

    try:
        faults.set_node_behaviour(name, node, behaviour)
    except (SandboxError, behaviours.BehaviourError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    typer.echo(f"node {node}: {behaviour}")
