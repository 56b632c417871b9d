"""kubeadm's command line (the subset k8sboot and operators use), cobra-style errors."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys

import yaml

from .. import pki, versions
from ..client import ApiError
from ..paths import ADMIN_CONF
from . import certs as certsmod
from . import certscmd, init, join, reset, tokens, upgrade, upgradeplan, uploadcerts
from .common import admin_client, klog_warn, log
from .config import (
    Config,
    default_cluster,
    default_init,
    format_duration,
    load,
    parse_duration,
)
from .errors import KubeadmError

STACK_HINT = "To see the stack trace of this error execute with --v=5 or higher"


class Parser(argparse.ArgumentParser):
    def error(self, message):  # cobra prints "Error: ..." and exits 1
        msg = message.replace("unrecognized arguments:", "unknown flag:")
        print(f"Error: {msg}\nSee '{self.prog} -h' for help and examples", file=sys.stderr)
        sys.exit(1)


def _csv(v: str) -> list[str]:
    return [x for x in v.split(",") if x]


def _go_bool(v: str) -> bool:
    """strconv.ParseBool, as pflag parses `--flag=value` for a bool flag."""
    if v in ("1", "t", "T", "TRUE", "true", "True"):
        return True
    if v in ("0", "f", "F", "FALSE", "false", "False"):
        return False
    raise argparse.ArgumentTypeError(f'strconv.ParseBool: parsing "{v}": invalid syntax')


# Bool flags that default to true: pflag takes them bare (true) or as --flag=false, never
# with a separate value, so a bare one is given its value before argparse sees it.
GO_BOOL_FLAGS = ("--etcd-upgrade", "--certificate-renewal")


def build() -> Parser:
    p = Parser(prog="kubeadm")
    p.add_argument("--v", "-v", default="0")
    sub = p.add_subparsers(dest="cmd", parser_class=Parser)

    v = sub.add_parser("version")
    v.add_argument("-o", "--output", default="")

    i = sub.add_parser("init")
    i.add_argument("--config")
    i.add_argument("--upload-certs", action="store_true")
    i.add_argument("--certificate-key")
    i.add_argument("--skip-phases", type=_csv, default=[])
    i.add_argument("--ignore-preflight-errors", type=_csv, default=[])
    i.add_argument("--skip-token-print", action="store_true")
    i.add_argument("--v", default="0")
    isub = i.add_subparsers(dest="sub", parser_class=Parser)
    ph = isub.add_parser("phase")
    phs = ph.add_subparsers(dest="phase", parser_class=Parser)
    uc = phs.add_parser("upload-certs")
    uc.add_argument("--upload-certs", action="store_true")
    uc.add_argument("--certificate-key")
    uc.add_argument("--config")
    uc.add_argument("--kubeconfig", default=ADMIN_CONF)
    uc.add_argument("--skip-certificate-key-print", action="store_true")
    for name in ("certs", "kubeconfig"):
        x = phs.add_parser(name)
        x.add_argument("which", nargs="?", default="all")
        x.add_argument("--config")

    j = sub.add_parser("join")
    j.add_argument("endpoint", nargs="?")
    j.add_argument("--config")
    j.add_argument("--token")
    j.add_argument("--discovery-token")
    j.add_argument("--tls-bootstrap-token")
    j.add_argument("--discovery-token-ca-cert-hash", action="append", default=[])
    j.add_argument("--discovery-token-unsafe-skip-ca-verification", action="store_true")
    j.add_argument("--control-plane", action="store_true")
    j.add_argument("--certificate-key")
    j.add_argument("--node-name")
    j.add_argument("--apiserver-advertise-address")
    j.add_argument("--apiserver-bind-port", type=int, default=6443)
    j.add_argument("--cri-socket")
    j.add_argument("--skip-phases", type=_csv, default=[])
    j.add_argument("--ignore-preflight-errors", type=_csv, default=[])
    j.add_argument("--v", default="0")

    r = sub.add_parser("reset")
    r.add_argument("-f", "--force", action="store_true")
    r.add_argument("--cri-socket")
    r.add_argument("--cert-dir")
    r.add_argument("--ignore-preflight-errors", type=_csv, default=[])
    r.add_argument("--cleanup-tmp-dir", action="store_true")
    r.add_argument("--config")
    r.add_argument("--v", default="0")

    t = sub.add_parser("token")
    t.add_argument("--kubeconfig", default=ADMIN_CONF)
    tsub = t.add_subparsers(dest="sub", parser_class=Parser)
    tc = tsub.add_parser("create")
    tc.add_argument("token", nargs="?")
    tc.add_argument("--ttl", default="24h0m0s")
    tc.add_argument("--print-join-command", action="store_true")
    tc.add_argument("--description", default="")
    tc.add_argument("--usages", type=_csv, default=["signing", "authentication"])
    tc.add_argument(
        "--groups", type=_csv, default=["system:bootstrappers:kubeadm:default-node-token"]
    )
    tc.add_argument("--certificate-key")
    tc.add_argument("--config")
    tc.add_argument("--kubeconfig", default=ADMIN_CONF)
    td = tsub.add_parser("delete")
    td.add_argument("ids", nargs="*")
    td.add_argument("--kubeconfig", default=ADMIN_CONF)
    tl = tsub.add_parser("list")
    tl.add_argument("-o", "--output", default="text")
    tl.add_argument("--kubeconfig", default=ADMIN_CONF)
    tsub.add_parser("generate")

    c = sub.add_parser("certs")
    csub = c.add_subparsers(dest="sub", parser_class=Parser)
    ce = csub.add_parser("check-expiration")
    ce.add_argument("-o", "--output", default="")
    ce.add_argument("--cert-dir")
    ce.add_argument("--config")
    ce.add_argument("--kubeconfig", default=ADMIN_CONF)
    cr = csub.add_parser("renew")
    cr.add_argument("which")
    cr.add_argument("--cert-dir")
    cr.add_argument("--config")
    csub.add_parser("certificate-key")

    k = sub.add_parser("kubeconfig")
    ksub = k.add_subparsers(dest="sub", parser_class=Parser)
    ku = ksub.add_parser("user")
    ku.add_argument("--config")
    ku.add_argument("--client-name", default="")
    ku.add_argument("--org", type=_csv, action="append", default=[])  # pflag StringSlice
    ku.add_argument("--token", default="")
    ku.add_argument("--validity-period", default=format_duration(USER_CERT_VALIDITY))
    ku.add_argument("--v", default="0")

    u = sub.add_parser("upgrade")
    usub = u.add_subparsers(dest="sub", parser_class=Parser)
    up = usub.add_parser("plan")
    up.add_argument("version", nargs="?")
    up.add_argument("-o", "--output", "--experimental-output", default="text")
    ua = usub.add_parser("apply")
    ua.add_argument("version", nargs="?")
    ua.add_argument("-y", "--yes", action="store_true")
    ua.add_argument("-f", "--force", action="store_true")
    un = usub.add_parser("node")
    un.add_argument("--kubeconfig")
    for x in (up, ua):
        x.add_argument("--kubeconfig", default=ADMIN_CONF)
        x.add_argument("--allow-experimental-upgrades", action="store_true")
        x.add_argument("--allow-release-candidate-upgrades", action="store_true")
        x.add_argument("--print-config", action="store_true")
    for x in (up, ua, un):
        x.add_argument("--config")
        x.add_argument("--etcd-upgrade", type=_go_bool, default=True)
        x.add_argument("--ignore-preflight-errors", type=_csv, default=[])
        x.add_argument("--v", default="0")
    for x in (ua, un):
        x.add_argument("--certificate-renewal", type=_go_bool, default=True)
        x.add_argument("--dry-run", action="store_true")
        x.add_argument("--patches")
        x.add_argument("--skip-phases", type=_csv, default=[])
    return p


def cmd_version(a) -> int:
    ver = versions.kubernetes_version()
    info = {"clientVersion": versions.git_version_info(ver)}
    if a.output == "short":
        print(ver)
    elif a.output == "json":
        print(json.dumps(info, indent=2))
    elif a.output == "yaml":
        print(yaml.safe_dump(info, sort_keys=False), end="")
    elif a.output == "":
        gi = info["clientVersion"]
        print(
            "kubeadm version: &version.Info{"
            + ", ".join(f'{k[0].upper() + k[1:]}:"{v}"' for k, v in gi.items())
            + "}"
        )
    else:
        raise KubeadmError(f"invalid output format: {a.output}")
    return 0


def cmd_init(a) -> int:
    if a.sub == "phase":
        return cmd_init_phase(a)
    if not a.config:
        raise KubeadmError("this kubeadm stand-in requires --config (k8sboot always passes one)")
    cfg = load(a.config, "init")
    return init.run(
        cfg, a.upload_certs, a.certificate_key, a.ignore_preflight_errors, a.skip_phases
    )


def cmd_init_phase(a) -> int:
    if a.phase == "upload-certs":
        if not a.upload_certs:
            log("[upload-certs] Skipping phase. Please see --upload-certs")
            return 0
        client = admin_client(a.kubeconfig)
        # Like upstream's newInitData: without --config the phase runs on a defaulted
        # ClusterConfiguration (local etcd), not on the cluster's kubeadm-config, so
        # external etcd's certificates are left out of the Secret (kubernetes#84627).
        if a.config:
            cluster = load(a.config, "init").cluster
        else:
            cluster = {}
            default_cluster(cluster)
        key = a.certificate_key or uploadcerts.new_key()
        uploadcerts.upload(client, cluster, key, log)
        if not a.skip_certificate_key_print:
            log("[upload-certs] Using certificate key:")
            log(key)
        return 0
    if a.phase in ("certs", "kubeconfig"):
        cfg: Config = load(a.config, "init")
        adv = cfg.init["localAPIEndpoint"]["advertiseAddress"]
        port = int(cfg.init["localAPIEndpoint"]["bindPort"])
        local = "local" in cfg.cluster["etcd"]
        if a.phase == "certs":
            certsmod.create_cas(cfg.cluster["certificatesDir"], local, log)
            certsmod.create_leaves(cfg.cluster, cfg.node_name, adv, log)
        else:
            certsmod.create_kubeconfigs(
                cfg.cluster,
                cfg.node_name,
                adv,
                port,
                [
                    "admin.conf",
                    "super-admin.conf",
                    "kubelet.conf",
                    "controller-manager.conf",
                    "scheduler.conf",
                ],
                log,
            )
        return 0
    raise KubeadmError(f"unknown phase {a.phase!r}")


def cmd_join(a) -> int:
    flag_set = [
        f
        for f in (
            "token",
            "discovery_token",
            "node_name",
            "control_plane",
            "certificate_key",
            "apiserver_advertise_address",
            "cri_socket",
        )
        if getattr(a, f)
    ] + (["discovery-token-ca-cert-hash"] if a.discovery_token_ca_cert_hash else [])
    if a.config:
        if flag_set or a.endpoint:
            raise KubeadmError(
                "can not mix '--config' with arguments "
                + str(sorted(f.replace("_", "-") for f in flag_set)).replace("'", "")
            )
        cfg = load(a.config, "join")
    else:
        import tempfile

        token = a.discovery_token or a.token
        if not a.endpoint or not token:
            raise KubeadmError('discovery: Invalid value: "": bootstrapToken or file must be set')
        doc = {
            "apiVersion": versions.kubeadm_api_versions(versions.minor())[0],
            "kind": "JoinConfiguration",
            "discovery": {
                "bootstrapToken": {
                    "apiServerEndpoint": a.endpoint,
                    "token": token,
                    "caCertHashes": a.discovery_token_ca_cert_hash,
                    "unsafeSkipCAVerification": a.discovery_token_unsafe_skip_ca_verification,
                },
                "tlsBootstrapToken": a.tls_bootstrap_token or a.token,
            },
            "nodeRegistration": {
                k: v for k, v in (("name", a.node_name), ("criSocket", a.cri_socket)) if v
            },
        }
        if a.control_plane:
            doc["controlPlane"] = {"localAPIEndpoint": {"bindPort": a.apiserver_bind_port}}
            if a.apiserver_advertise_address:
                doc["controlPlane"]["localAPIEndpoint"]["advertiseAddress"] = (
                    a.apiserver_advertise_address
                )
            if a.certificate_key:
                doc["controlPlane"]["certificateKey"] = a.certificate_key
        with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
            yaml.safe_dump(doc, f)
        cfg = load(f.name, "join")
    return join.run(cfg, a.ignore_preflight_errors, a.skip_phases)


def cmd_token(a) -> int:
    if a.sub == "generate":
        print(tokens.generate())
        return 0
    client = admin_client(a.kubeconfig)
    if a.sub == "create":
        token = a.token or tokens.generate()
        tokens.parse(token)
        tokens.create(
            client, token, ttl=a.ttl, usages=a.usages, groups=a.groups, description=a.description
        )
        if a.print_join_command:
            server = client.host + ":" + str(client.port)
            ca_hash = pki.ca_cert_hash(pki.load_cert(client_ca(a.kubeconfig)))
            cmd = init.join_command(server, token, ca_hash, wrap=False)
            if a.certificate_key:
                cmd += f" --control-plane --certificate-key {a.certificate_key}"
            print(cmd + " ")
        else:
            print(token)
        return 0
    if a.sub == "delete":
        if not a.ids:
            raise KubeadmError(
                "missing argument; 'token delete' is missing token of form "
                '"[a-z0-9]{6}" or "[a-z0-9]{6}\\.[a-z0-9]{16}"'
            )
        for t in a.ids:
            tid = t.split(".")[0]
            try:
                client.delete("Secret", f"bootstrap-token-{tid}", "kube-system")
            except ApiError as e:
                raise KubeadmError(f'failed to delete bootstrap token "{tid}": {e}') from None
            print(f'bootstrap token "{tid}" deleted')
        return 0
    if a.sub == "list":
        secrets = [
            s
            for s in client.list("Secret", "kube-system")
            if s.get("type") == "bootstrap.kubernetes.io/token"
        ]
        now = dt.datetime.now(dt.UTC)
        rows = []
        for s in secrets:
            d = tokens.decode_secret(s)
            exp = d.get("expiration")
            ttl = "<forever>"
            if exp:
                left = (dt.datetime.fromisoformat(exp.replace("Z", "+00:00")) - now).total_seconds()
                ttl = (
                    "<invalid>"
                    if left <= 0
                    else format_duration(round(left / 3600) * 3600).replace("0m0s", "")
                    if left > 3600
                    else format_duration(left)
                )
            usages = sorted(
                k[len("usage-bootstrap-") :]
                for k, v in d.items()
                if k.startswith("usage-bootstrap-") and v == "true"
            )
            rows.append(
                {
                    "token": f"{d.get('token-id')}.{d.get('token-secret')}",
                    "ttl": ttl,
                    "expires": exp or "<never>",
                    "usages": usages,
                    "description": d.get("description", ""),
                    "groups": [g for g in d.get("auth-extra-groups", "").split(",") if g],
                }
            )
        if a.output in ("json", "yaml"):
            for r in rows:
                doc = {
                    "kind": "BootstrapToken",
                    "apiVersion": "output.kubeadm.k8s.io/v1alpha3",
                    "token": r["token"],
                    "description": r["description"] or None,
                    "expires": r["expires"] if r["expires"] != "<never>" else None,
                    "usages": r["usages"],
                    "groups": r["groups"],
                }
                doc = {k: v for k, v in doc.items() if v is not None}
                print(
                    json.dumps(doc, indent=4)
                    if a.output == "json"
                    else yaml.safe_dump(doc, sort_keys=False)
                )
            return 0
        fmt = "{:<25} {:<11} {:<22} {:<24} {:<58} {}"
        print(fmt.format("TOKEN", "TTL", "EXPIRES", "USAGES", "DESCRIPTION", "EXTRA GROUPS"))
        for r in rows:
            print(
                fmt.format(
                    r["token"],
                    r["ttl"],
                    r["expires"],
                    ",".join(r["usages"]),
                    r["description"] or "<none>",
                    ",".join(r["groups"]) or "<none>",
                )
            )
        return 0
    raise KubeadmError("token: a subcommand is required (create, delete, list, generate)")


def client_ca(kubeconfig_path: str) -> bytes:
    from ..kubeconfig import Credentials

    return Credentials.from_file(kubeconfig_path).ca_pem


def cmd_certs(a) -> int:
    if a.sub == "check-expiration":
        return certscmd.check_expiration(a.output, a.cert_dir, a.config)
    if a.sub == "renew":
        if a.which != "all":
            raise KubeadmError("this stand-in renews `all` certificates only")
        return certscmd.renew_all(a.cert_dir)
    if a.sub == "certificate-key":
        print(uploadcerts.new_key())
        return 0
    raise KubeadmError("certs: a subcommand is required")


# kubeadmconstants.CertificateValidityPeriod: `kubeconfig user`'s default, and the most it
# takes without a warning.
USER_CERT_VALIDITY = 365 * 24 * 3600


def cmd_kubeconfig(a) -> int:
    """`kubeadm kubeconfig user` (cmd/kubeadm/app/cmd/kubeconfig.go, v1.31-v1.33): the
    kubeconfig on stdout; --config is optional (since v1.27), kubeadm's defaults without."""
    if a.sub != "user":
        raise KubeadmError('missing subcommand; "kubeconfig" is not meant to be run on its own')
    if not a.client_name:
        raise KubeadmError('required flag(s) "client-name" not set')
    try:
        validity = parse_duration(a.validity_period)
    except KubeadmError as e:
        raise KubeadmError(
            f'invalid argument "{a.validity_period}" for "--validity-period" flag: {e}'
        ) from None
    started = dt.datetime.now(dt.UTC)
    if a.config:
        cfg = load(a.config, "init")
    else:
        cfg = Config()
        default_init(cfg)
    if validity > USER_CERT_VALIDITY:
        klog_warn(
            f"kubeconfig.go:0] WARNING: the specified certificate validity period "
            f"{format_duration(validity)} is longer than the default duration "
            f"{format_duration(USER_CERT_VALIDITY)}, this may increase security risks."
        )
    endpoint = cfg.init["localAPIEndpoint"]
    try:
        config = certsmod.user_kubeconfig(
            cfg.cluster,
            endpoint["advertiseAddress"],
            int(endpoint["bindPort"]),
            a.client_name,
            [org for orgs in a.org for org in orgs],
            started + dt.timedelta(seconds=validity),
            a.token,
        )
    except OSError as e:
        what = "private key" if str(e.filename).endswith(".key") else "certificate"
        raise KubeadmError(
            f"couldn't create a kubeconfig; the CA files couldn't be loaded: couldn't load "
            f"the {what} file {e.filename}: open {e.filename}: {e.strerror.lower()}"
        ) from None
    print(yaml.safe_dump(config))  # client-go writes its keys sorted; then Fprintln
    return 0


def cmd_upgrade(a) -> int:
    commands = {"plan": upgradeplan.plan, "apply": upgrade.apply, "node": upgrade.upgrade_node}
    if a.sub not in commands:
        raise KubeadmError('missing subcommand; "upgrade" is not meant to be run on its own')
    return commands[a.sub](a)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    a = build().parse_args([f"{x}=true" if x in GO_BOOL_FLAGS else x for x in args])
    handlers = {
        "version": cmd_version,
        "init": cmd_init,
        "join": cmd_join,
        "reset": lambda a: reset.run(a.force, a.cert_dir, a.ignore_preflight_errors),
        "token": cmd_token,
        "certs": cmd_certs,
        "upgrade": cmd_upgrade,
        "kubeconfig": cmd_kubeconfig,
    }
    if a.cmd not in handlers:
        build().print_help()
        return 0
    try:
        return handlers[a.cmd](a)
    except KubeadmError as e:
        print(str(e), file=sys.stderr)
        print(STACK_HINT, file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        return 130


__all__ = ["default_cluster", "main", "parse_duration"]
