"""Container images made locally, for machines that reach no registry.

busybox_image() packs the host's static busybox (Debian package busybox-static) as a
one-layer OCI image archive that `ctr image import` (and `ctr -n k8s.io ...`) accepts.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

BUSYBOX = Path("/bin/busybox")
APPLETS = ("sh", "echo", "cat", "sleep", "hostname", "ls", "id", "true", "false")


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _tar(members: list[tuple[tarfile.TarInfo, bytes | None]]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            info.mtime = 0
            info.uname = info.gname = ""
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return out.getvalue()


def _dir(name: str) -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type, info.mode = tarfile.DIRTYPE, 0o755
    return info, None


def busybox_layer(busybox: Path = BUSYBOX) -> bytes:
    binary = busybox.read_bytes()
    if not binary.startswith(b"\x7fELF"):
        raise ValueError(f"{busybox} is not an ELF binary")
    exe = tarfile.TarInfo("bin/busybox")
    exe.size, exe.mode = len(binary), 0o755
    members: list[tuple[tarfile.TarInfo, bytes | None]] = [
        _dir("bin"),
        (exe, binary),
        _dir("tmp"),
        _dir("proc"),
        _dir("sys"),
        _dir("dev"),
        _dir("etc"),
    ]
    for applet in APPLETS:
        link = tarfile.TarInfo(f"bin/{applet}")
        link.type, link.linkname, link.mode = tarfile.SYMTYPE, "busybox", 0o777
        members.append((link, None))
    return _tar(members)


def busybox_image(
    name: str, *, cmd: tuple[str, ...] = ("/bin/sh",), busybox: Path = BUSYBOX
) -> bytes:
    """An OCI image-layout archive (tar) holding one image called `name` (a full reference,
    e.g. "lab.k8sboot.test/busybox:1")."""
    layer = busybox_layer(busybox)
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {"Cmd": list(cmd), "Env": ["PATH=/bin"], "WorkingDir": "/"},
            "rootfs": {"type": "layers", "diff_ids": [_digest(layer)]},
            "history": [{"created_by": "k8sboot lab: static busybox"}],
        },
        sort_keys=True,
    ).encode()
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": _digest(config),
                "size": len(config),
            },
            "layers": [
                {
                    "mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": _digest(layer),
                    "size": len(layer),
                }
            ],
        },
        sort_keys=True,
    ).encode()
    index = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [
                {
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "digest": _digest(manifest),
                    "size": len(manifest),
                    "platform": {"architecture": "amd64", "os": "linux"},
                    "annotations": {
                        "io.containerd.image.name": name,
                        "org.opencontainers.image.ref.name": name.rsplit(":", 1)[-1],
                    },
                }
            ],
        },
        sort_keys=True,
    ).encode()
    layout = json.dumps({"imageLayoutVersion": "1.0.0"}).encode()

    def blob(data: bytes) -> tuple[tarfile.TarInfo, bytes]:
        info = tarfile.TarInfo("blobs/sha256/" + _digest(data).split(":", 1)[1])
        info.size, info.mode = len(data), 0o644
        return info, data

    def file(name_: str, data: bytes) -> tuple[tarfile.TarInfo, bytes]:
        info = tarfile.TarInfo(name_)
        info.size, info.mode = len(data), 0o644
        return info, data

    return _tar(
        [
            file("oci-layout", layout),
            file("index.json", index),
            _dir("blobs"),
            _dir("blobs/sha256"),
            blob(config),
            blob(manifest),
            blob(layer),
        ]
    )
