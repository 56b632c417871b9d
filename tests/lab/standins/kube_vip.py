"""kube-vip stand-in (control-plane VIP in ARP mode with Lease leader election), run by the
kubelet stand-in for the static pod /etc/kubernetes/manifests/kube-vip.yaml.

What it does, as kube-vip v0.8 does in `manager` mode with cp_enable and vip_leaderelection:

- configuration from the container's environment: address, port, vip_interface, vip_cidr,
  vip_arp, cp_enable, cp_namespace, vip_leaderelection, vip_leasename, vip_leaseduration,
  vip_renewdeadline, vip_retryperiod, vip_nodename (default: the hostname);
- the API server is reached with the kubeconfig mounted at /etc/kubernetes/admin.conf, with
  the server replaced by `https://kubernetes:<port>`: the pod's hostAliases map `kubernetes`
  to 127.0.0.1, so each kube-vip talks to the API server on its own machine (that is how
  kube-vip can run before the VIP exists, during `kubeadm init`);
- at start it deletes the VIP from the interface if it is there; then it takes part in the
  election for the Lease <cp_namespace>/<vip_leasename> (holder = node name) with client-go's
  rules (a lease held by another is taken over only after it went unchanged for
  leaseDurationSeconds as observed locally; the leader renews every retry period and gives up
  when it could not renew within the renew deadline);
- the leader adds VIP/cidr to the interface (`ip addr add`) and announces it with gratuitous
  ARP (every 3 s while leading); on losing the lease it deletes the VIP and exits (upstream
  panics "lost leadership, restarting kube-vip"; the kubelet restarts it);
- on SIGTERM (manifest removed, kubelet stopped, machine shut down) it releases the Lease
  (ReleaseOnCancel) and deletes the VIP.

Differences from upstream are listed in tests/lab/standins/README.md.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time

from .client import ApiError, Client
from .kubeconfig import Credentials

KUBECONFIG_IN_CONTAINER = "/etc/kubernetes/admin.conf"
ARP_EVERY = 3.0


def log(level: str, msg: str, **fields) -> None:
    t = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    extra = "".join(f" {k}={json.dumps(v) if isinstance(v, str) else v}" for k, v in fields.items())
    sys.stderr.write(f'time="{t}" level={level} msg="{msg}"{extra}\n')
    sys.stderr.flush()


def micro_now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _bool(value: str | None, default: bool) -> bool:
    if value is None or value == "":
        return default
    return value.strip().lower() in ("1", "true", "yes", "on")


class Config:
    def __init__(self, env: dict[str, str]):
        self.address = env.get("address") or env.get("vip_address") or ""
        self.port = int(env.get("port") or 6443)
        self.interface = env.get("vip_interface") or ""
        self.cidr = int(env.get("vip_cidr") or env.get("vip_subnet", "").lstrip("/") or 32)
        self.arp = _bool(env.get("vip_arp"), False)
        self.control_plane = _bool(env.get("cp_enable"), False)
        self.namespace = env.get("cp_namespace") or "kube-system"
        self.leader_election = _bool(env.get("vip_leaderelection"), False)
        self.lease_name = env.get("vip_leasename") or "plndr-cp-lock"
        self.lease_duration = int(env.get("vip_leaseduration") or 5)
        self.renew_deadline = int(env.get("vip_renewdeadline") or 3)
        self.retry_period = int(env.get("vip_retryperiod") or 1)
        self.node_name = env.get("vip_nodename") or socket.gethostname()

    def problems(self) -> list[str]:
        out = []
        try:
            ipaddress.IPv4Address(self.address)
        except ValueError:
            out.append(f"address {self.address!r} is not an IPv4 address (the lab supports IPv4)")
        if not self.interface:
            out.append("vip_interface is not set (interface auto-detection is not implemented)")
        if not self.control_plane:
            out.append("only control-plane mode (cp_enable=true) is implemented")
        return out


# --- the VIP on the interface ---------------------------------------------------------------


class Vip:
    def __init__(self, address: str, cidr: int, interface: str):
        self.address, self.cidr, self.interface = address, cidr, interface

    def present(self) -> bool:
        out = subprocess.run(
            ["ip", "-4", "-o", "addr", "show", "dev", self.interface],
            capture_output=True,
            text=True,
        ).stdout
        return any(f" {self.address}/" in line for line in out.splitlines())

    def add(self) -> bool:
        if self.present():
            return False
        p = subprocess.run(
            ["ip", "addr", "add", f"{self.address}/{self.cidr}", "dev", self.interface],
            capture_output=True,
            text=True,
        )
        if p.returncode != 0:
            raise OSError(f"ip addr add {self.address}/{self.cidr}: {p.stderr.strip()}")
        return True

    def delete(self) -> bool:
        if not self.present():
            return False
        p = subprocess.run(
            ["ip", "addr", "del", f"{self.address}/{self.cidr}", "dev", self.interface],
            capture_output=True,
            text=True,
        )
        return p.returncode == 0

    def announce(self) -> None:
        """Gratuitous ARP (request and reply, sender = target = VIP) on the interface, so
        neighbours move their cache entry for the VIP to this machine's MAC address."""
        with open(f"/sys/class/net/{self.interface}/address") as f:
            mac = bytes.fromhex(f.read().strip().replace(":", ""))
        ip = ipaddress.IPv4Address(self.address).packed
        broadcast = b"\xff" * 6
        with socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0806)) as s:
            s.bind((self.interface, 0x0806))
            for op, target_mac in ((1, b"\x00" * 6), (2, broadcast)):
                arp = (
                    b"\x00\x01\x08\x00\x06\x04" + op.to_bytes(2, "big") + mac + ip + target_mac + ip
                )
                s.send(broadcast + mac + b"\x08\x06" + arp)


# --- API access and leader election -----------------------------------------------------------


def resolve_alias(name: str, aliases: list[dict]) -> str | None:
    for entry in aliases:
        if name in (entry.get("hostnames") or []):
            return entry.get("ip")
    return None


def api_client(cfg: Config, env: dict[str, str]) -> Client:
    mounts = json.loads(env.get("K8SBOOT_STANDIN_MOUNTS") or "{}")
    aliases = json.loads(env.get("K8SBOOT_STANDIN_HOST_ALIASES") or "[]")
    path = mounts.get(KUBECONFIG_IN_CONTAINER, KUBECONFIG_IN_CONTAINER)
    creds = Credentials.from_file(path)
    # kube-vip replaces the kubeconfig's server with "kubernetes:<port>" in control-plane
    # mode; the container resolves that name through the pod's hostAliases (/etc/hosts).
    server = f"https://kubernetes:{cfg.port}"
    address = resolve_alias("kubernetes", aliases)
    if address is None:
        try:
            address = socket.gethostbyname("kubernetes")
        except OSError:
            address = None
    return Client(
        server,
        creds.ca_pem,
        creds.cert_pem,
        creds.key_pem,
        creds.token,
        verify=not creds.insecure,
        timeout=max(1.0, float(cfg.renew_deadline)),
        connect_to=address,
    )


class Elector:
    """A Lease lock with client-go's leader-election rules (observed time, not clocks)."""

    def __init__(self, client: Client, cfg: Config):
        self.client, self.cfg = client, cfg
        self.identity = cfg.node_name
        self.observed: dict | None = None
        self.observed_at = 0.0
        self.leader: str | None = None

    def _observe(self, spec: dict) -> None:
        if spec != self.observed:
            self.observed = dict(spec)
            self.observed_at = time.monotonic()
        holder = spec.get("holderIdentity") or ""
        if holder and holder != self.leader:
            self.leader = holder
            log("INFO", "new leader elected", leader=holder)

    def try_acquire_or_renew(self) -> bool:
        now = micro_now()
        desired = {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": self.cfg.lease_duration,
            "acquireTime": now,
            "renewTime": now,
            "leaseTransitions": 0,
        }
        lease = self.client.get_or_none("Lease", self.cfg.lease_name, self.cfg.namespace)
        if lease is None:
            try:
                self.client.create(
                    {
                        "apiVersion": "coordination.k8s.io/v1",
                        "kind": "Lease",
                        "metadata": {"name": self.cfg.lease_name, "namespace": self.cfg.namespace},
                        "spec": desired,
                    }
                )
            except ApiError as e:
                if e.status == 409:  # another candidate created it first
                    return False
                raise
            self._observe(desired)
            return True
        spec = lease.get("spec") or {}
        self._observe(spec)
        holder = spec.get("holderIdentity") or ""
        duration = int(spec.get("leaseDurationSeconds") or self.cfg.lease_duration)
        if holder and holder != self.identity and time.monotonic() < self.observed_at + duration:
            return False
        transitions = int(spec.get("leaseTransitions") or 0)
        if holder == self.identity:
            desired["acquireTime"] = spec.get("acquireTime") or now
            desired["leaseTransitions"] = transitions
        else:
            desired["leaseTransitions"] = transitions + 1
        lease["spec"] = desired
        try:
            self.client.update(lease)
        except ApiError as e:
            if e.status == 409:
                return False
            raise
        self._observe(desired)
        return True

    def release(self) -> None:
        lease = self.client.get_or_none("Lease", self.cfg.lease_name, self.cfg.namespace)
        if lease is None or (lease.get("spec") or {}).get("holderIdentity") != self.identity:
            return
        spec = lease["spec"]
        now = micro_now()
        lease["spec"] = {
            "holderIdentity": "",
            "leaseDurationSeconds": 1,
            "acquireTime": now,
            "renewTime": now,
            "leaseTransitions": spec.get("leaseTransitions", 0),
        }
        self.client.update(lease)


class KubeVip:
    def __init__(self, cfg: Config, client: Client | None):
        self.cfg = cfg
        self.vip = Vip(cfg.address, cfg.cidr, cfg.interface)
        self.client = client
        self.stopping = threading.Event()
        self.elector = Elector(client, cfg) if client is not None else None

    def _sleep(self, seconds: float) -> None:
        self.stopping.wait(seconds)

    def _announce(self) -> None:
        if not self.cfg.arp:
            return
        try:
            self.vip.announce()
        except OSError as e:
            log("WARN", "gratuitous ARP failed", err=str(e))

    def _attempt(self) -> bool:
        try:
            return self.elector.try_acquire_or_renew()
        except (ApiError, OSError) as e:
            log(
                "ERROR",
                "error retrieving resource lock",
                lock=f"{self.cfg.namespace}/{self.cfg.lease_name}",
                err=str(e),
            )
            return False

    def lead(self) -> None:
        if self.vip.add():
            log("INFO", "added VIP", IP=self.cfg.address, interface=self.cfg.interface)
        log("INFO", "Start ARP/NDP advertisement")
        self._announce()

    def step_down(self) -> None:
        log("INFO", "This node is becoming a follower within the cluster")
        if self.vip.delete():
            log("INFO", "deleted address", IP=self.cfg.address, interface=self.cfg.interface)

    def run(self) -> int:
        if self.vip.delete():
            log("INFO", "deleted address", IP=self.cfg.address, interface=self.cfg.interface)
        if self.elector is None:
            # vip_leaderelection=false: every instance holds the VIP (upstream does the same).
            self.lead()
            while not self.stopping.is_set():
                self._sleep(ARP_EVERY)
                self._announce()
            self.step_down()
            return 0
        log(
            "INFO",
            "cluster membership",
            namespace=self.cfg.namespace,
            lock=self.cfg.lease_name,
            id=self.cfg.node_name,
        )
        log(
            "INFO",
            "attempting to acquire leader lease",
            lease=f"{self.cfg.namespace}/{self.cfg.lease_name}",
        )
        while not self.stopping.is_set():
            if self._attempt():
                break
            self._sleep(self.cfg.retry_period * (1 + 0.2 * random.random()))
        if self.stopping.is_set():
            return 0
        log(
            "INFO",
            "successfully acquired lease",
            lease=f"{self.cfg.namespace}/{self.cfg.lease_name}",
        )
        self.lead()
        renewed = last_arp = time.monotonic()
        while not self.stopping.is_set():
            self._sleep(self.cfg.retry_period)
            if self.stopping.is_set():
                break
            if self._attempt():
                renewed = time.monotonic()
            elif time.monotonic() - renewed > self.cfg.renew_deadline:
                log("INFO", "failed to renew lease", lease=self.cfg.lease_name)
                self.step_down()
                log("ERROR", "lost leadership, restarting kube-vip")
                return 1
            if time.monotonic() - last_arp >= ARP_EVERY:
                last_arp = time.monotonic()
                self._announce()
        # Terminated while leading: release the Lease (ReleaseOnCancel) so another control
        # plane takes over at once, then give the address up.
        log("INFO", "Received termination, signaling cluster shutdown")
        with contextlib.suppress(ApiError, OSError):
            self.elector.release()
        self.step_down()
        return 0


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] != "manager":
        log("ERROR", f"kube-vip stand-in: only `kube-vip manager` is implemented (got {args})")
        return 1
    env = dict(os.environ)
    cfg = Config(env)
    problems = cfg.problems()
    if problems:
        for p in problems:
            log("ERROR", p)
        return 1
    log(
        "INFO",
        "Starting kube-vip.io (k8sboot lab stand-in)",
        mode="ARP" if cfg.arp else "none",
        address=cfg.address,
        interface=cfg.interface,
    )
    client = api_client(cfg, env) if cfg.leader_election else None
    kv = KubeVip(cfg, client)

    def stop(*_):
        kv.stopping.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    return kv.run()


if __name__ == "__main__":
    sys.exit(main())
