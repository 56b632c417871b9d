"""Drive a lab by hand (as root, from the repository root):

    .venv/bin/python -m tests.lab box [--rebuild]     build or reuse the box; print its name
    .venv/bin/python -m tests.lab up [CP W E]         bring lab 0 up (default 1 2 0)
    .venv/bin/python -m tests.lab status              machines, states, addresses
    .venv/bin/python -m tests.lab env                 `export` lines: vagrant/k8sboot vs the lab
    .venv/bin/python -m tests.lab ssh NAME [CMD...]   run a command on a machine
    .venv/bin/python -m tests.lab packages [--serve]  build the stand-in Kubernetes packages;
                                                      serve them on the lab's bridge (:8090)
    .venv/bin/python -m tests.lab down                destroy it, leaving nothing behind
    .venv/bin/python -m tests.lab demo                the README's first command (.ci/demo)

Options: -i/--index N (lab N: bridge k8sb<N>, 10.213.<N>.0/24), --backend vagrant|lxc.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time

from tests.lab.box import ensure_box
from tests.lab.lab import Lab, LabError


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m tests.lab",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("-i", "--index", type=int, default=0)
    ap.add_argument("--backend", choices=("vagrant", "lxc"), default="vagrant")
    sub = ap.add_subparsers(dest="command", required=True)
    box = sub.add_parser("box")
    box.add_argument("--rebuild", action="store_true")
    up = sub.add_parser("up")
    up.add_argument("shape", nargs="*", type=int, metavar="N", help="control planes, workers, etcd")
    up.add_argument("--fresh", action="store_true", help="destroy what exists first")
    sub.add_parser("status")
    sub.add_parser("env")
    ssh = sub.add_parser("ssh")
    ssh.add_argument("name")
    ssh.add_argument("cmd", nargs=argparse.REMAINDER)
    packages = sub.add_parser("packages")
    packages.add_argument("--serve", action="store_true", help="serve until interrupted")
    packages.add_argument("--out", default="/var/cache/k8sboot-lab/apt")
    sub.add_parser("down")
    sub.add_parser("demo")
    args = ap.parse_args(argv)

    try:
        if args.command == "box":
            print(ensure_box(rebuild=args.rebuild).name)
            return 0
        lab = Lab(index=args.index, backend=args.backend)
        if args.command == "up":
            shape = (args.shape + [1, 2, 0][len(args.shape) :])[:3]
            lab.up(*shape, fresh=args.fresh)
            _status(lab)
            print(f"ready in {lab.timings['ready']:.1f} s")
        elif args.command == "status":
            _status(lab)
        elif args.command == "env":
            for key, value in sorted(lab.env.items()):
                if key.startswith(("VAGRANT_", "K8SBOOT_")):
                    print(f"export {key}={shlex.quote(value)}")
            print(f"cd {shlex.quote(str(lab.cwd))}")
        elif args.command == "ssh":
            result = lab.ssh(args.name, " ".join(args.cmd) or "true", check=False, reuse=False)
            sys.stdout.write(result.stdout)
            sys.stderr.write(result.stderr)
            return result.returncode
        elif args.command == "packages":
            return _packages(lab, args.out, args.serve)
        elif args.command == "demo":
            from tests.lab import demo

            return demo.run(lab)
        elif args.command == "down":
            lab.destroy()
            print(f"lab {lab.name} destroyed; nothing left behind")
    except LabError as exc:
        print(f"lab: {exc}", file=sys.stderr)
        return 1
    return 0


def _packages(lab: Lab, out: str, serve: bool) -> int:
    from pathlib import Path

    from tests.lab import debs
    from tests.lab.plugin import LAB_KUBE_VERSIONS, REPO_PORT

    repo = debs.build_repo(Path(out), list(LAB_KUBE_VERSIONS))
    url = f"http://{lab.subnet}.1:{REPO_PORT}/"
    print(f"packages for {', '.join(LAB_KUBE_VERSIONS)} in {repo}; served at {url}")
    if serve:
        server = debs.serve(repo, f"{lab.subnet}.1", REPO_PORT)  # serves in a thread
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            server.shutdown()
    return 0


def _status(lab: Lab) -> None:
    if not lab.machines:
        print(f"lab {lab.name}: no machines")
        return
    print(f"lab {lab.name} ({lab.backend}), bridge {lab.bridge}, workdir {lab.workdir}")
    for m in lab.machines:
        state = lab.state(m.name)
        if state == "running" and lab.is_partitioned(m.name):
            state = "partitioned"
        print(f"  {m.name:<5} {','.join(m.roles):<14} {m.address:<15} {state:<11} {m.container}")


if __name__ == "__main__":
    sys.exit(main())
