"""`k8sboot etcd`: backups (verified, encrypted, scheduled), restores, health, members,
defragmentation, alarms."""

from __future__ import annotations

from pathlib import Path

import click
from rich.console import Console

from k8sboot import workflows
from k8sboot.cli import options
from k8sboot.cli.common import App, RunsWorkflow, echo_json, pass_app
from k8sboot.cli.completion import BackupName, HostNames, MemberName
from k8sboot.errors import EXIT_FAILURE, UserError
from k8sboot.etcd import report, scheduled
from k8sboot.etcd.archive import backup_key, create_key_file
from k8sboot.etcd.catalogue import BAD_STATES, Store
from k8sboot.etcd.observe import observe
from k8sboot.etcd.stores import locate, open_store
from k8sboot.session import looking
from k8sboot.spec import Cluster
from k8sboot.timeouts import ETCD_ANSWER_TIMEOUT

backup_argument = click.argument("backup", metavar="BACKUP", type=BackupName())


def _cluster(app: App) -> Cluster:
    # A dead member must not keep the others from being backed up or inspected.
    return app.cluster(allow_stopped=True)


def _warn_unreadable(store: Store) -> None:
    for line in store.unreadable.values():
        click.echo(f"warning: {line}", err=True)


def _print(renderable: object) -> None:
    console = Console(highlight=False)
    if not console.is_terminal:  # a pipe or a file: full lines, not 80 columns
        console = Console(highlight=False, width=200)
    console.print(renderable)


@click.group("etcd", short_help="Backups, restores, health and upkeep of etcd.")
def group() -> None:
    """etcd: backups (verified, encrypted, scheduled), restores, health, members,
    defragmentation, alarms. Stacked (kubeadm's static pods) and external etcd alike.

    \b
    Examples:
      k8sboot etcd backup
      k8sboot etcd list
      k8sboot etcd restore latest --yes
    """


@click.command("backup", cls=RunsWorkflow, short_help="Snapshot etcd into the catalogue, verified.")
@click.option(
    "--member",
    type=MemberName(),
    help="The member to snapshot (name or hex ID); default: a healthy follower.",
)
@options.dry_run
@options.shared()
@pass_app
def backup(app: App, member: str | None, dry_run: bool) -> None:
    """Snapshot a healthy member (a follower, sparing the leader), verify it (etcd's own
    sha256 at its end, `snapshot status`, the hash of the copy), bring it into the
    catalogue with a manifest, encrypted when backup.encryptionKeyFile is set, and apply
    retention. Files 0600, directories 0700; nothing is left on the node.

    \b
    Examples:
      k8sboot etcd backup
      k8sboot etcd backup --member cp2
    """
    cluster = _cluster(app)
    app.run(workflows.etcd_backup(member), cluster, dry_run=dry_run)


@click.command("list", short_help="The backup catalogue and each backup's state.")
@click.option("--check", is_flag=True, help="Read every file again: size, sha256, etcd's checksum.")
@options.shared()
@pass_app
@click.pass_context
def list_(ctx: click.Context, app: App, check: bool) -> None:
    """The backup catalogue, oldest first, with each backup's state: checked (at save),
    test-restored (by `etcd verify`), or FAILED (its last `etcd verify`), MISSING, CORRUPT
    (exit 1, as for a manifest that cannot be read), UNAUTHENTICATED (exit 1: with
    backup.encryptionKeyFile set, a manifest its key does not authenticate). No SSH.

    \b
    Examples:
      k8sboot etcd list
      k8sboot etcd list --check -o json
    """
    cluster = _cluster(app)
    store = open_store(cluster)
    key = backup_key(cluster, store)
    manifests = store.manifests()
    rows = report.catalogue_rows(store, manifests, key)
    bad = [r for r in rows if r["state"].startswith(BAD_STATES)]
    if check:
        from k8sboot.etcd.checks import Unauthenticated, VerifyFailed, local_check

        for row, manifest in zip(rows, manifests, strict=True):
            if row in bad:
                continue
            try:
                local_check(store, manifest, cluster)
                row["state"] = "checked now"
            except Unauthenticated:
                pass  # its state says so already
            except (VerifyFailed, UserError) as error:
                row["state"] = f"CORRUPT: {error}"
                bad.append(row)
    if app.json:
        unreadable = [{"file": f, "error": e} for f, e in sorted(store.unreadable.items())]
        echo_json(
            {
                "ok": not (bad or store.unreadable),
                "location": store.location,
                "authenticated": key is not None,
                "backups": rows,
                "unreadable": unreadable,
            }
        )
    else:
        _print(report.catalogue_table(store.location, rows))
        if key is None:
            click.echo(report.UNAUTHENTICATED)
    _warn_unreadable(store)
    if bad or store.unreadable:
        ctx.exit(EXIT_FAILURE)


@click.command(
    "verify", cls=RunsWorkflow, short_help="Check BACKUP end to end with a test restore."
)
@backup_argument
@options.shared()
@pass_app
def verify(app: App, backup: str) -> None:
    """Check BACKUP (a name from `etcd list`, `latest`, or a file with its manifest beside
    it) end to end: its file against the manifest, then a test restore on a member host
    into a scratch directory, served by a throw-away etcd on a unix socket only root can
    reach, whose revision, key count and KV hash must match the manifest. Records the
    result in the manifest.

    \b
    Examples:
      k8sboot etcd verify latest
      k8sboot etcd verify ./lab-20250303T003000Z.db   # its manifest beside it
    """
    cluster = _cluster(app)
    store, manifest = locate(cluster, backup)
    _warn_unreadable(store)
    app.run(workflows.etcd_verify(store, manifest), cluster)


@click.command(
    "restore", cls=RunsWorkflow, short_help="Replace the whole cluster's etcd data with BACKUP."
)
@click.argument("backup", metavar="BACKUP", type=BackupName(), required=False)
@click.option(
    "--onto",
    "onto",
    multiple=True,
    type=HostNames(),
    metavar="HOST[,HOST...]",
    help="Restore onto these hosts of the cluster file (names or addresses), when they are "
    "not the backup's members: new machines or new addresses.",
)
@click.option("-y", "--yes", is_flag=True, help="Do it: the cluster's current data is replaced.")
@click.option(
    "--rollback",
    metavar="TAG",
    help="Undo the restore in progress with this tag (printed by the restore): the data from "
    "before back in place, the API servers as they were.",
)
@click.option(
    "--without-revision-bump",
    is_flag=True,
    help="Restore even with etcd tools that cannot bump the revision and mark it compacted "
    "(etcdutl < 3.5.10): clients that saw later revisions then keep stale caches until they "
    "re-list.",
)
@options.dry_run
@options.wait_timeout_hidden
@options.shared()
@pass_app
def restore(
    app: App,
    backup: str | None,
    onto: tuple[str, ...],
    yes: bool,
    rollback: str | None,
    without_revision_bump: bool,
    dry_run: bool,
    wait_timeout: float,
) -> None:
    """Disaster recovery: replace the whole cluster's etcd data with BACKUP. Checks the
    backup first; takes a snapshot first when the cluster still answers; stages the backup
    on every member (checked, restored into a scratch directory as a new cluster); then
    stops the API servers and etcd, puts the restored data in place (the old data is kept
    beside it, never deleted), starts etcd, then the API servers, and checks that the
    Nodes are back. The revision is bumped by a billion and marked compacted (etcdutl
    --bump-revision --mark-compacted), as etcd recommends for Kubernetes, so that watchers
    re-list instead of missing what the restore undid; tools that cannot do it are refused
    unless --without-revision-bump.

    From the first stop on, the restore is recorded as in progress (with a tag): run the
    same command again to finish it, or --rollback TAG to undo it; until then `up`, `reset`
    and `node remove` refuse to run. The data from before is kept on each etcd host in
    /var/lib/k8sboot/etcd-before-restore/TAG, outside what kubeadm manages.

    \b
    Examples:
      k8sboot etcd restore latest --dry-run
      k8sboot etcd restore latest --yes
      k8sboot etcd restore latest --yes --onto cp4,cp5,cp6   # new machines
      k8sboot etcd restore --rollback TAG --yes
    """
    if rollback is not None and (backup is not None or onto):
        raise UserError("--rollback TAG takes no BACKUP and no --onto")
    if rollback is None and backup is None:
        raise UserError("name the BACKUP to restore (`k8sboot etcd list`), or --rollback TAG")
    if not (yes or dry_run):
        what = (
            "a rollback undoes the restore" if rollback else "restore replaces the cluster's data"
        )
        raise UserError(f"{what}; pass --yes to confirm")
    cluster = _cluster(app)
    if rollback is not None:
        app.run(
            workflows.etcd_rollback(rollback),
            cluster,
            dry_run=dry_run,
            wait_timeout=wait_timeout,
        )
        return
    hosts = tuple(part for value in onto for part in value.split(",") if part)
    store, manifest = locate(cluster, backup)
    _warn_unreadable(store)
    app.run(
        workflows.etcd_restore(store, manifest, hosts, without_revision_bump),
        cluster,
        dry_run=dry_run,
        wait_timeout=wait_timeout,
    )


@click.command("health", short_help="etcd's members, leader, DB size and alarms.")
@options.shared()
@pass_app
@click.pass_context
def health(ctx: click.Context, app: App) -> None:
    """Members, leader, DB size against the quota, raft index, alarms, versions. Changes
    nothing, takes no lock. Exit 0 healthy, 1 unhealthy.

    \b
    Examples:
      k8sboot etcd health
      k8sboot etcd status -o json
    """
    cluster = _cluster(app)
    with looking(cluster, "etcd-health", api_wait=ETCD_ANSWER_TIMEOUT) as context:
        view = observe(context)
        document = report.health_document(context, view)
    if app.json:
        echo_json(document)
    else:
        _print(report.health_table(document))
        for alarm in document["alarms"]:
            _print(f"[red]alarm {alarm['alarm']} on member {alarm['member']}[/]")
        for problem in document["problems"]:
            click.echo(f"problem: {problem}", err=True)
        verdict = "[green]healthy[/]" if document["healthy"] else "[red]UNHEALTHY[/]"
        _print(f"etcd is {verdict}; {document['tools'] or 'no etcd tools'}")
    if not document["healthy"]:
        ctx.exit(EXIT_FAILURE)


@click.command("members", short_help="etcd's members against the cluster file.")
@options.shared()
@pass_app
@click.pass_context
def members(ctx: click.Context, app: App) -> None:
    """etcd's members (IDs in hex, peer URLs, learners) against the cluster file's hosts
    (by exact peer URL) and the control planes' Node objects: flags stale and missing
    members. Exit 1 when any is flagged or etcd does not answer.

    \b
    Examples:
      k8sboot etcd members
      k8sboot etcd members -o json
    """
    cluster = _cluster(app)
    with looking(cluster, "etcd-members", api_wait=ETCD_ANSWER_TIMEOUT) as context:
        document = report.members_document(context, observe(context, statuses=False))
    if app.json:
        echo_json(document)
    else:
        _print(report.members_table(document))
        for problem in document["problems"]:
            click.echo(f"problem: {problem}", err=True)
    if not document["ok"]:
        ctx.exit(EXIT_FAILURE)


@click.command("defrag", cls=RunsWorkflow, short_help="Defragment every member, one at a time.")
@click.option(
    "--pause",
    type=options.Duration(minimum=0),
    default="5s",
    show_default=True,
    help="How long to wait between two members (5s, 1m).",
)
@options.dry_run
@options.shared()
@pass_app
def defrag(app: App, pause: float, dry_run: bool) -> None:
    """Defragment every member, one at a time: followers first, the leader last, a pause
    between. Refused (exit 3) while etcd is unhealthy.

    \b
    Examples:
      k8sboot etcd defrag --dry-run
      k8sboot etcd defrag --pause 30s
    """
    cluster = _cluster(app)
    app.run(workflows.etcd_defrag(pause), cluster, dry_run=dry_run)


@click.command(
    "alarms",
    cls=RunsWorkflow,
    streams_with="disarm",
    short_help="List etcd's alarms, or disarm them.",
)
@click.option("--disarm", is_flag=True, help="Disarm every alarm (after freeing space).")
@options.shared()
@pass_app
@click.pass_context
def alarms(ctx: click.Context, app: App, disarm: bool) -> None:
    """etcd's alarms (NOSPACE, CORRUPT); exit 1 while any is raised. --disarm disarms them
    and fails if etcd raises them again.

    \b
    Examples:
      k8sboot etcd alarms
      k8sboot etcd alarms --disarm
    """
    cluster = _cluster(app)
    if disarm:
        app.run(workflows.etcd_disarm(), cluster)
        return
    with looking(cluster, "etcd-alarms", api_wait=ETCD_ANSWER_TIMEOUT) as context:
        view = observe(context)
        raised = [{"member": f"{a.member_id:x}", "alarm": a.alarm} for a in view.alarms]
        problems = [] if view.answers else view.problems()
    if app.json:
        echo_json({"ok": not (raised or problems), "alarms": raised, "problems": problems})
    else:
        for alarm in raised:
            click.echo(f"{alarm['alarm']} on member {alarm['member']}")
        for problem in problems:
            click.echo(f"problem: {problem}", err=True)
        if not raised and not problems:
            click.echo("no alarms")
    if raised or problems:
        ctx.exit(EXIT_FAILURE)


@click.command(
    "schedule", cls=RunsWorkflow, short_help="Install the scheduled backup timers (or remove them)."
)
@options.dry_run
@options.shared()
@pass_app
def schedule(app: App, dry_run: bool) -> None:
    """Install backup.schedule (a systemd OnCalendar expression) as a timer on every
    control plane: snapshots, checked by `snapshot status`, kept locally (the newest
    backup.retention.last). Without backup.schedule, removes the timers. `etcd pull`
    brings the snapshots into the catalogue.

    \b
    Examples:
      k8sboot etcd schedule --dry-run
      k8sboot etcd schedule
    """
    cluster = _cluster(app)
    app.run(workflows.etcd_schedule(), cluster, dry_run=dry_run)


@click.command(
    "pull", cls=RunsWorkflow, short_help="Copy the scheduled snapshots into the catalogue."
)
@options.dry_run
@options.shared()
@pass_app
def pull(app: App, dry_run: bool) -> None:
    """Copy the scheduled snapshots the catalogue lacks off the control planes: checked,
    encrypted when a key is set, with a manifest each; then apply retention.

    \b
    Examples:
      k8sboot etcd pull
      k8sboot etcd pull --dry-run
    """
    cluster = _cluster(app)
    app.run(workflows.etcd_pull(), cluster, dry_run=dry_run)


@click.command("keygen", short_help="Create a backup encryption key in PATH.")
@click.argument("path", type=click.Path(path_type=Path, dir_okay=False))
@options.shared(spec_file=False, vagrant=False, output=())
def keygen(path: Path) -> None:
    """Create a backup encryption key in PATH (32 random bytes, base64, mode 0600; never
    overwrites). Point backup.encryptionKeyFile at it and keep it away from the backups:
    without it, encrypted backups cannot be restored.

    \b
    Examples:
      k8sboot etcd keygen ~/secrets/lab-backup.key
    """
    key = create_key_file(path)
    click.echo(f"wrote {path} (key id {key.id}); keep a copy somewhere safe")


@click.command("age-identity", short_help="Write the age identity of the scheduled snapshots.")
@click.argument("path", type=click.Path(path_type=Path, dir_okay=False))
@options.shared(output=())
@pass_app
def age_identity(app: App, path: Path) -> None:
    """Write the age identity that decrypts the scheduled snapshots on the control planes
    (derived from backup.encryptionKeyFile) to PATH (mode 0600; never overwrites), for
    `age -d -i PATH NAME.db.age > NAME.db`. Keep it as safe as the backup key.

    \b
    Examples:
      k8sboot etcd age-identity ~/secrets/lab.age
      age -d -i ~/secrets/lab.age NAME.db.age > NAME.db
    """
    key = scheduled.cluster_key(_cluster(app))
    if key is None:
        raise UserError(
            "backup.encryptionKeyFile is not set: scheduled snapshots are not encrypted"
        )
    scheduled.write_identity_file(key, path)
    click.echo(f"wrote {path} (recipient {scheduled.recipient_of(key)})")


group.add_command(backup, "backup")
group.add_command(backup, "snapshot")
group.add_command(list_, "list")
group.add_command(verify)
group.add_command(restore)
group.add_command(health, "health")
group.add_command(health, "status")
group.add_command(members)
group.add_command(defrag)
group.add_command(alarms)
group.add_command(schedule)
group.add_command(pull)
group.add_command(keygen)
group.add_command(age_identity)
