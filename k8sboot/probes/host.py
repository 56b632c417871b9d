# Runs ON a host (python3 -, stdlib only): prints one JSON document of what is there.
# k8sboot prepends `ARGS = {...}` (files to hash, packages, services, sysctls, modules,
# and where kubeadm's manifests and k8sboot's stamps are).
# Read-only: it changes nothing.
import glob
import hashlib
import json
import os
import platform
import re
import socket
import subprocess
import time

ARGS = globals().get("ARGS", {})
MANIFESTS_DIR = ARGS["manifests_dir"]


def read(path, default=None):
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return handle.read()
    except OSError:
        return default


def run(*argv):
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=20)
        return done.returncode, done.stdout
    except (OSError, subprocess.TimeoutExpired):
        return 127, ""


def mtime(path):
    try:
        return os.stat(path).st_mtime
    except OSError:
        return None


def sha256(path):
    try:
        with open(path, "rb") as handle:
            return hashlib.sha256(handle.read()).hexdigest()
    except OSError:
        return None


def os_release():
    fields = {}
    for line in (read("/etc/os-release") or "").splitlines():
        key, _, value = line.partition("=")
        fields[key] = value.strip().strip('"')
    return {
        "id": fields.get("ID", ""),
        "version_id": fields.get("VERSION_ID", ""),
        "pretty": fields.get("PRETTY_NAME", ""),
    }


def memory():
    values = {}
    for line in (read("/proc/meminfo") or "").splitlines():
        key, _, rest = line.partition(":")
        values[key] = int(rest.split()[0]) // 1024 if rest.split() else 0
    swaps = [line.split()[0] for line in (read("/proc/swaps") or "").splitlines()[1:] if line]
    return {
        "mem_mib": values.get("MemTotal", 0),
        "swap_mib": values.get("SwapTotal", 0),
        "swap_devices": swaps,
    }


def container():
    code, out = run("systemd-detect-virt", "--container")
    if code == 0 and out.strip() not in ("", "none"):
        return out.strip()
    marker = read("/run/systemd/container")
    return marker.strip() if marker else None


def listening_ports():
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in (read(table) or "").splitlines()[1:]:
            fields = line.split()
            if len(fields) > 3 and fields[3] == "0A":  # TCP_LISTEN
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return sorted(ports)


def addresses():
    code, out = run("ip", "-j", "addr", "show")
    found = []
    if code == 0:
        for link in json.loads(out or "[]"):
            for info in link.get("addr_info", []):
                found.append(
                    {
                        "interface": link.get("ifname"),
                        "address": info.get("local"),
                        "prefix": info.get("prefixlen"),
                        "mac": link.get("address"),
                    }
                )
    return found


def macs():
    result = {}
    for path in glob.glob("/sys/class/net/*/address"):
        name = path.split("/")[-2]
        value = (read(path) or "").strip()
        if name != "lo" and value and value != "00:00:00:00:00:00":
            result[name] = value
    return result


def packages(names):
    if not names:
        return {}
    _code, out = run("dpkg-query", "-W", "-f", "${Package}\t${Version}\t${Status}\n", *names)
    found = {}
    for line in out.splitlines():
        name, version, status = ([*line.split("\t"), "", ""])[:3]
        if status.endswith(" installed"):
            found[name] = {"version": version, "held": status.startswith("hold ")}
    return found


def services(names):
    """State of each unit, and `since`: when its main process started, in this host's
    wall-clock seconds (comparable with file mtimes), or None when nothing runs."""
    if not names:
        return {}
    _, out = run(
        "systemctl",
        "show",
        "--property=Id,ActiveState,UnitFileState,ExecMainStartTimestampMonotonic",
        *names,
    )
    # systemd stamps the start on CLOCK_MONOTONIC; the wall clock may have been stepped
    # since, so convert through the offset between the two clocks now.
    offset = time.time() - time.monotonic()
    states = {}
    for block, name in zip(out.strip().split("\n\n"), names):
        fields = dict(line.split("=", 1) for line in block.splitlines() if "=" in line)
        started = int(fields.get("ExecMainStartTimestampMonotonic") or 0)
        states[name] = {
            "active": fields.get("ActiveState") or "unknown",
            "enabled": fields.get("UnitFileState") or "unknown",
            "since": offset + started / 1e6 if started else None,
        }
    return states


def fstab_swap():
    """The swap entries /etc/fstab mounts at boot: the lines the prepare role comments
    out (its pattern, playbooks/roles/prepare)."""
    pattern = re.compile(r"^([^#\s]+\s+\S+\s+swap\s.*)$")
    return [line for line in (read("/etc/fstab") or "").splitlines() if pattern.match(line)]


def hosts_blocks():
    """The lines of each k8sboot block in /etc/hosts, by cluster name (the prepare role's
    `# BEGIN k8sboot cluster NAME` markers)."""
    blocks, name = {}, None
    for line in (read("/etc/hosts") or "").splitlines():
        words = line.split()
        if words[:4] == ["#", "BEGIN", "k8sboot", "cluster"] and len(words) == 5:
            name = words[4]
            blocks[name] = []
        elif words[:4] == ["#", "END", "k8sboot", "cluster"]:
            name = None
        elif name is not None and words:
            blocks[name].append(" ".join(words))
    return blocks


def sysctls(names):
    values = {}
    for name in names:
        value = read("/proc/sys/" + name.replace(".", "/"))
        values[name] = value.strip() if value is not None else None
    return values


def modules(names):
    loaded = {line.split()[0] for line in (read("/proc/modules") or "").splitlines() if line}
    return {name: name in loaded or os.path.isdir("/sys/module/" + name) for name in names}


def busy(names):
    """Processes that an interrupted run may have left working (kubeadm, apt, dpkg)."""
    found = []
    for path in glob.glob("/proc/[0-9]*/comm"):
        name = (read(path) or "").strip()
        if name in names:
            found.append(name)
    return sorted(set(found))


def links(paths):
    """Where each symbolic link points (k8sboot's etcd tools), None when it is no link."""
    return {p: os.path.realpath(p) if os.path.islink(p) else None for p in paths}


def image(path):
    """The first image of a static pod manifest: its tag is the version the pod runs."""
    for line in (read(path) or "").splitlines():
        key, _, value = line.strip().lstrip("- ").partition(":")
        if key == "image" and value.strip():
            return value.strip().strip("'\"")
    return None


def stamps():
    found = {}
    for path in glob.glob(os.path.join(ARGS["stamps_dir"], "*")):
        found[os.path.basename(path)] = (read(path) or "").strip()
    return found


facts = {
    "time": time.time(),
    "hostname": socket.gethostname(),
    "os": os_release(),
    "arch": platform.machine(),
    "kernel": platform.release(),
    "cpus": os.cpu_count() or 0,
    "memory": memory(),
    "container": container(),
    "systemd": os.path.isdir("/run/systemd/system"),
    "cgroup2": os.path.exists("/sys/fs/cgroup/cgroup.controllers"),
    "machine_id": (read("/etc/machine-id") or "").strip(),
    "product_uuid": (read("/sys/class/dmi/id/product_uuid") or "").strip() or None,
    "macs": macs(),
    "addresses": addresses(),
    "ports": listening_ports(),
    "files": {path: sha256(path) for path in ARGS.get("files", [])},
    "mtimes": {path: mtime(path) for path in ARGS.get("files", [])},
    "exists": {path: os.path.exists(path) for path in ARGS.get("exists", [])},
    "manifests": sorted(os.path.basename(p) for p in glob.glob(MANIFESTS_DIR + "/*")),
    "images": {os.path.basename(p): image(p) for p in glob.glob(MANIFESTS_DIR + "/*.yaml")},
    "packages": packages(ARGS.get("packages", [])),
    "services": services(ARGS.get("services", [])),
    "sysctls": sysctls(ARGS.get("sysctls", [])),
    "fstab_swap": fstab_swap(),
    "hosts_blocks": hosts_blocks(),
    "modules": modules(ARGS.get("modules", [])),
    "stamps": stamps(),
    "links": links(ARGS.get("links", [])),
    "busy": busy(ARGS.get("busy", [])),
}
print(json.dumps(facts))
