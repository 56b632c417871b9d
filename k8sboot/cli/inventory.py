from __future__ import annotations

import click
import yaml

from k8sboot.cli import options
from k8sboot.cli.common import App, echo_json, pass_app
from k8sboot.inventory import ansible_inventory, ansible_inventory_json


@click.command("inventory", short_help="Print the Ansible inventory.")
@options.shared(output=("yaml", "json"))
@pass_app
def command(app: App) -> None:
    """Print the Ansible inventory: groups control_plane, workers and etcd.

    The JSON form is that of a dynamic inventory script's --list.

    \b
    Examples:
      k8sboot inventory > hosts.yaml && ansible -i hosts.yaml all -m ping
      k8sboot inventory -o json
    """
    cluster = app.cluster()
    if app.json:
        echo_json(ansible_inventory_json(cluster))
    else:
        click.echo(yaml.safe_dump(ansible_inventory(cluster), sort_keys=False), nl=False)
