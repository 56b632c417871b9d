from __future__ import annotations

from pathlib import Path

import click
import yaml

from k8sboot.cli import options
from k8sboot.cli.common import echo_json, load
from k8sboot.inventory import ansible_inventory, ansible_inventory_json


@click.command("inventory")
@options.spec_file
@options.vagrant
@options.output("yaml", "json")
@options.common
def command(spec_path: Path, vagrant: bool, output: str, **_: object) -> None:
    """Print the Ansible inventory: groups control_plane, workers and etcd.

    The JSON form is that of a dynamic inventory script's --list.
    """
    cluster = load(spec_path, vagrant).cluster
    if output == "json":
        echo_json(ansible_inventory_json(cluster))
    else:
        click.echo(yaml.safe_dump(ansible_inventory(cluster), sort_keys=False), nl=False)
