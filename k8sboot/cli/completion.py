"""Shell completion of what the cluster file and the backup catalogue name: nodes, hosts,
etcd members, backups. The types convert nothing (the commands check the names, with
one line naming the known ones); they only offer candidates.

A completion runs in the operator's shell at every Tab: it reads the cluster file (the one
-f or K8SBOOT_FILE names, else ./cluster.yaml) and never fails aloud. No cluster file, a
file that does not validate, a catalogue that cannot be read: no candidates."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import click
from click.shell_completion import CompletionItem

from k8sboot.cli.common import App, read_spec
from k8sboot.spec import Cluster


def _cluster(ctx: click.Context) -> Cluster | None:
    app = ctx.find_object(App) or App()
    try:
        return read_spec(app.spec_path).cluster
    except Exception:  # whatever goes wrong, the operator's shell shows nothing
        return None


def _offer(names: Iterable[str], incomplete: str, prefix: str = "") -> list[CompletionItem]:
    return [
        CompletionItem(prefix + name)
        for name in dict.fromkeys(names)
        if name.startswith(incomplete)
    ]


class _Named(click.ParamType):
    """A name the cluster file knows, completed from `names(cluster)`."""

    def __init__(self, names: Callable[[Cluster], Iterable[str]]):
        self.names = names

    def candidates(self, ctx: click.Context) -> list[str]:
        cluster = _cluster(ctx)
        try:
            return list(self.names(cluster)) if cluster is not None else []
        except Exception:
            return []

    def shell_complete(
        self, ctx: click.Context, param: click.Parameter, incomplete: str
    ) -> list[CompletionItem]:
        return _offer(self.candidates(ctx), incomplete)


class NodeName(_Named):
    """A Kubernetes node: a host of the cluster file with a kubelet."""

    name = "node"

    def __init__(self) -> None:
        super().__init__(lambda cluster: (h.name for h in cluster.kube_nodes))


class MemberName(_Named):
    """An etcd member, by the name of its host."""

    name = "member"

    def __init__(self) -> None:
        super().__init__(lambda cluster: (h.name for h in cluster.etcd_members))


class HostName(_Named):
    """A host of the cluster file, whatever its roles."""

    name = "host"

    def __init__(self) -> None:
        super().__init__(lambda cluster: (h.name for h in cluster.hosts))


class HostNames(_Named):
    """Hosts of the cluster file, comma-separated: the name after the last comma is the
    one completed."""

    name = "hosts"

    def __init__(self) -> None:
        super().__init__(lambda cluster: (h.name for h in cluster.hosts))

    def shell_complete(
        self, ctx: click.Context, param: click.Parameter, incomplete: str
    ) -> list[CompletionItem]:
        given, _, last = incomplete.rpartition(",")
        prefix = f"{given}," if given else ""
        taken = set(given.split(","))
        free = [name for name in self.candidates(ctx) if name not in taken]
        return _offer(free, last, prefix)


class BackupName(_Named):
    """A backup of the catalogue (`etcd list`), `latest`, or a file: a word that looks
    like a path is left to the shell's own file completion."""

    name = "backup"

    def __init__(self) -> None:
        super().__init__(_backup_names)

    def shell_complete(
        self, ctx: click.Context, param: click.Parameter, incomplete: str
    ) -> list[CompletionItem]:
        if incomplete.startswith((".", "/", "~")) or "/" in incomplete:
            return [CompletionItem(incomplete, type="file")]
        names = self.candidates(ctx)
        return _offer(["latest", *names] if names else [], incomplete)


def _backup_names(cluster: Cluster) -> list[str]:
    from k8sboot.etcd.stores import open_store

    return [m.name for m in open_store(cluster).manifests()]
