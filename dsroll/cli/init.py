"""``init``, ``schema`` and ``rbac``: start a repo, check environment files, grant least privilege."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from dsroll import output, workflow
from dsroll.cli.app import app
from dsroll.cli.flags import KUBE_FLAGS, EnvArg, KubeFlags, NamespaceOpt, OutputFormat, OutputOpt, with_kube_flags
from dsroll.cli.helptext import epilog
from dsroll.errors import BAD_INPUT
from dsroll.schema import schema_text


@app.command(
    epilog=epilog(
        [
            ("A new repo in ./agents, environment dev (no cluster needed)", "init agents"),
            (
                "Hardware classes proposed from the live nodes' labels",
                "init . --name prod --from-cluster --context prod-admin",
            ),
        ],
        BAD_INPUT + " (a file in the way without --force: nothing written)",
    )
)
@with_kube_flags
def init(
    directory: Annotated[
        Path, typer.Argument(metavar="[DIR]", help="The repo's folder (created if missing).", show_default=False)
    ] = Path("."),
    name: Annotated[str, typer.Option("--name", metavar="NAME", help="The environment's name (a DNS label).")] = "dev",
    from_cluster: Annotated[
        bool,
        typer.Option("--from-cluster", help="Propose hardware classes from the live nodes' labels, with node counts."),
    ] = False,
    force: Annotated[bool, typer.Option("--force", help="Overwrite files that exist with other content.")] = False,
    kube: KubeFlags = KUBE_FLAGS,
    out: OutputOpt = OutputFormat.text,
) -> None:
    """Start a GitOps repo: an environment, example templates, CI workflows, RBAC manifests, .gitignore.

    -n sets the environment's namespace (default node-agents); --context is written into it.
    The cluster is asked only with --from-cluster.
    """
    done = workflow.init(
        directory, name, kube.namespace, from_cluster=from_cluster, force=force, connect=kube.connect,
        context=kube.context,
    )  # fmt: skip
    output.init_view(done, fmt=out.value)


@app.command(
    epilog=epilog(
        [
            ("The copy init's environment files name for editors", "schema > .dsroll/environment.schema.json"),
        ]
    )
)
def schema() -> None:
    """Print the environment file's JSON Schema (draft 2020-12), for editors and CI linters."""
    sys.stdout.write(schema_text())


@app.command(
    epilog=epilog(
        [
            ("A CI deployer and a read-only reviewer for dev", "rbac dev | kubectl apply -f -"),
            ("Review the rules before applying them", "rbac prod > deploy/rbac/prod.yaml"),
        ],
        BAD_INPUT,
    )
)
def rbac(env: EnvArg, namespace: NamespaceOpt = None) -> None:
    """Print the ServiceAccounts, Roles and bindings of a CI deployer and a read-only reviewer (kubectl apply -f -)."""
    sys.stdout.write(workflow.rbac(env, namespace))
