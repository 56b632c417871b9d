"""How lab machines are made: by Vagrant (the project's Vagrantfile, provider lxc) or, the
lighter path, by plain LXC from the same box rootfs."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

from tests.lab.host import LXC_PATH, LabError, lxc_dirs, lxc_state, run
from tests.lab.machines import Machine, Shape

if TYPE_CHECKING:
    from tests.lab.lab import Lab


class VagrantBackend:
    """Machines made by the project's Vagrantfile with `vagrant up --provider=lxc`."""

    def __init__(self, lab: Lab) -> None:
        self.lab = lab

    def _id_file(self, name: str) -> Path:
        return self.lab.dotfile_dir / "machines" / name / "lxc" / "id"

    def created(self) -> list[str]:
        root = self.lab.dotfile_dir / "machines"
        if not root.is_dir():
            return []
        return sorted(p.name for p in root.iterdir() if (p / "lxc" / "id").exists())

    def container(self, name: str) -> str:
        try:
            return self._id_file(name).read_text().strip()
        except OSError:
            return f"{self.lab.name}-{name}"

    def up(self, shape: Shape, *, grown: bool) -> None:
        lab = self.lab
        running_before = [n for n in self.created() if lxc_state(self.container(n)) == "RUNNING"]
        run(
            ["vagrant", "up", "--provider=lxc", "--parallel"],
            env=lab.env,
            cwd=lab.cwd,
            log=lab.log,
            timeout=1800,
        )
        if grown and running_before:
            # Machines that were already up learn the names of the new ones.
            run(
                ["vagrant", "provision", *running_before, "--provision-with", "hosts"],
                env=lab.env,
                cwd=lab.cwd,
                log=lab.log,
                timeout=600,
            )

    def machines(self, shape: Shape) -> dict[str, Machine]:
        lab = self.lab
        try:
            listing = json.loads(lab.machines_file.read_text())
        except (OSError, ValueError) as exc:
            raise LabError(f"cannot read {lab.machines_file}: {exc}") from exc
        configs = parse_ssh_config(lab.vagrant("ssh-config", timeout=300).stdout)
        machines = {}
        for entry in listing["machines"]:
            name = entry["name"]
            if name not in configs:
                raise LabError(f"`vagrant ssh-config` has no entry for {name}")
            c = configs[name]
            machines[name] = Machine(
                name=name,
                roles=tuple(entry["roles"]),
                address=entry["address"],
                ssh_host=c["hostname"],
                ssh_port=int(c.get("port", 22)),
                ssh_user=c.get("user", "vagrant"),
                ssh_key=Path(c["identityfile"].strip('"')),
                container=self.container(name),
                veth=f"{lab.bridge}-{name}",
            )
        return machines

    def destroy(self, names: list[str] | None) -> None:
        lab = self.lab
        if not lab.dotfile_dir.exists():
            return
        run(
            ["vagrant", "destroy", "--force", "--parallel", *(names or [])],
            env=lab.env,
            cwd=lab.cwd,
            log=lab.log,
            timeout=900,
        )

    def stop(self, name: str) -> None:
        lab = self.lab
        run(["vagrant", "halt", name], env=lab.env, cwd=lab.cwd, log=lab.log, timeout=300)

    def start(self, name: str) -> None:
        lab = self.lab
        run(
            ["vagrant", "up", "--provider=lxc", name],
            env=lab.env,
            cwd=lab.cwd,
            log=lab.log,
            timeout=600,
        )


def parse_ssh_config(text: str) -> dict[str, dict[str, str]]:
    """`vagrant ssh-config` output -> {host: {lowercased option: value}}."""
    hosts: dict[str, dict[str, str]] = {}
    current: dict[str, str] | None = None
    for line in text.splitlines():
        parts = line.strip().split(None, 1)
        if len(parts) != 2:
            continue
        key, value = parts[0].lower(), parts[1]
        if key == "host":
            current = hosts.setdefault(value, {})
        elif current is not None:
            current[key] = value
    return hosts


class LxcBackend:
    """The lighter path: the same machines from the same box rootfs with plain LXC.

    Each machine is an overlay over the cached rootfs (no per-machine unpacking: seconds
    instead of minutes for 20 machines, a few MiB of disk each) with the container settings
    of the Vagrantfile's lxc block, mirrored here. /var/lib/containerd is a bind-mounted
    plain directory: containerd's overlay snapshots cannot live on an overlay rootfs. There
    is no Vagrant state: `vagrant` and `k8sboot --vagrant` do not see these machines; the
    machines file is written all the same.
    """

    USER = "vagrant"

    def __init__(self, lab: Lab) -> None:
        self.lab = lab

    @property
    def key(self) -> Path:
        return self.lab.workdir / "id_ed25519"

    def container(self, name: str) -> str:
        return f"{self.lab.name}-{name}"

    def created(self) -> list[str]:
        prefix = f"{self.lab.name}-"
        return sorted(
            d[len(prefix) :] for d in lxc_dirs(prefix) if (LXC_PATH / d / "config").exists()
        )

    def _config(self, name: str, shape: Shape) -> str:
        lab = self.lab
        assert lab.box is not None
        address = shape.address_of(name, lab.subnet)
        base = LXC_PATH / self.container(name)
        mac = "02:00:" + ":".join(f"{int(o):02x}" for o in address.split("."))
        cpus, memory = {"control-plane": (2, 2048), "etcd": (1, 1024), "worker": (1, 1536)}[
            shape.role_of(name)
        ]
        lines = [
            "lxc.include = /usr/share/lxc/config/common.conf",
            "lxc.arch = x86_64",
            f"lxc.rootfs.path = overlay:{lab.box.rootfs}:{base}/delta0",
            f"lxc.uts.name = {name}",
            "lxc.net.0.type = veth",
            f"lxc.net.0.link = {lab.bridge}",
            "lxc.net.0.flags = up",
            "lxc.net.0.name = eth0",
            f"lxc.net.0.hwaddr = {mac}",
            f"lxc.net.0.ipv4.address = {address}/24",
            f"lxc.net.0.ipv4.gateway = {lab.subnet}.1",
            f"lxc.net.0.veth.pair = {lab.bridge}-{name}",
            "lxc.apparmor.profile = unconfined",
            "lxc.mount.auto =",
            "lxc.mount.auto = proc:rw sys:rw cgroup:rw:force",
            "lxc.cgroup.devices.allow = a",
            "lxc.cgroup2.devices.allow = a",
            "lxc.mount.entry = tmpfs tmp tmpfs nodev,nosuid,size=2G 0 0",
            f"lxc.mount.entry = {base}/containerd var/lib/containerd none bind,create=dir 0 0",
        ]
        if Path("/sys/fs/cgroup/memory/memory.limit_in_bytes").exists():
            lines += [
                f"lxc.cgroup.memory.limit_in_bytes = {memory}M",
                "lxc.cgroup.cpu.cfs_period_us = 100000",
                f"lxc.cgroup.cpu.cfs_quota_us = {cpus * 100000}",
            ]
        elif Path("/sys/fs/cgroup/cgroup.controllers").exists():
            lines += [
                f"lxc.cgroup2.memory.max = {memory}M",
                f"lxc.cgroup2.cpu.max = {cpus * 100000} 100000",
            ]
        return "\n".join(lines) + "\n"

    def _write_machines_file(self, shape: Shape) -> None:
        lab = self.lab
        listing = {
            "version": 1,
            "subnet": lab.subnet,
            "machines": [
                {"name": n, "roles": [shape.role_of(n)], "address": shape.address_of(n, lab.subnet)}
                for n in shape.names()
            ],
        }
        lab.dotfile_dir.mkdir(parents=True, exist_ok=True)
        lab.machines_file.write_text(json.dumps(listing, indent=2) + "\n")

    def up(self, shape: Shape, *, grown: bool) -> None:
        lab = self.lab
        if not self.key.exists():
            run(
                [
                    "ssh-keygen",
                    "-q",
                    "-t",
                    "ed25519",
                    "-N",
                    "",
                    "-C",
                    f"lab {lab.name}",
                    "-f",
                    str(self.key),
                ]
            )
        self._write_machines_file(shape)
        for name in shape.names():
            base = LXC_PATH / self.container(name)
            if not (base / "config").exists():
                for sub in ("delta0", "containerd"):
                    (base / sub).mkdir(parents=True, exist_ok=True)
                base.chmod(0o700)
                (base / "config").write_text(self._config(name, shape))
        to_start = [n for n in shape.names() if lxc_state(self.container(n)) != "RUNNING"]
        procs = [
            (
                n,
                subprocess.Popen(
                    ["lxc-start", "-d", "-n", self.container(n)],
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                ),
            )
            for n in to_start
        ]
        failed = []
        for n, proc in procs:
            out, _ = proc.communicate(timeout=300)
            if proc.returncode != 0:
                failed.append(f"{n}: {out.decode(errors='replace').strip()}")
        if failed:
            raise LabError("lxc-start failed: " + "; ".join(failed))
        # What Vagrant's provisioning does: the SSH key and every machine's name.
        hosts = "".join(f"{shape.address_of(n, lab.subnet)} {n}\n" for n in shape.names())
        pubkey = Path(str(self.key) + ".pub").read_text().strip()
        script = (
            "set -e; sed -i -e '/^# BEGIN k8sboot machines$/,/^# END k8sboot machines$/d' "
            "-e '/^127[.]0[.]1[.]1[[:space:]]/d' /etc/hosts; "
            f"printf '# BEGIN k8sboot machines\\n{hosts.replace(chr(10), chr(92) + 'n')}"
            "# END k8sboot machines\\n' >> /etc/hosts; "
            f"install -d -m 700 -o {self.USER} -g {self.USER} /home/{self.USER}/.ssh; "
            f"echo '{pubkey}' > /home/{self.USER}/.ssh/authorized_keys; "
            f"chown {self.USER}: /home/{self.USER}/.ssh/authorized_keys; "
            f"chmod 600 /home/{self.USER}/.ssh/authorized_keys"
        )
        names = to_start if not grown else shape.names()
        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(lambda n: self._attach(n, script), names))

    def _attach(self, name: str, script: str) -> None:
        # Right after lxc-start the container's init may not have set up /etc yet.
        for _ in range(50):
            result = run(
                [
                    "lxc-attach",
                    "-n",
                    self.container(name),
                    "--clear-env",
                    "--",
                    "/bin/sh",
                    "-c",
                    script,
                ],
                check=False,
            )
            if result.ok:
                return
            time.sleep(0.2)
        result.check()

    def machines(self, shape: Shape) -> dict[str, Machine]:
        lab = self.lab
        return {
            n: Machine(
                name=n,
                roles=(shape.role_of(n),),
                address=shape.address_of(n, lab.subnet),
                ssh_host=shape.address_of(n, lab.subnet),
                ssh_port=22,
                ssh_user=self.USER,
                ssh_key=self.key,
                container=self.container(n),
                veth=f"{lab.bridge}-{n}",
            )
            for n in shape.names()
        }

    def destroy(self, names: list[str] | None) -> None:
        for name in names or self.created():
            container = self.container(name)
            subprocess.run(["lxc-stop", "-k", "-n", container], capture_output=True)
            subprocess.run(["lxc-destroy", "-n", container], capture_output=True)
            shutil.rmtree(LXC_PATH / container, ignore_errors=True)

    def stop(self, name: str) -> None:
        run(["lxc-stop", "-t", "60", "-n", self.container(name)], timeout=120)

    def start(self, name: str) -> None:
        run(["lxc-start", "-d", "-n", self.container(name)], timeout=120)
