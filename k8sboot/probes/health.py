# Runs ON a host (python3 -, stdlib only) for `k8sboot health`: one JSON document.
# k8sboot prepends `ARGS = {...}`: services to check, API server URLs to ask for /readyz
# (and /version), the CA to verify them with, the etcd manifest to read the quota from.
# Read-only: it changes nothing.
import json
import os
import re
import ssl
import subprocess
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

ARGS = globals().get("ARGS", {})
TIMEOUT = 3


def service_states(names):
    if not names:
        return {}
    try:
        done = subprocess.run(
            ["systemctl", "is-active", *names], capture_output=True, text=True, timeout=10
        )
        states = done.stdout.split()
    except (OSError, subprocess.TimeoutExpired):
        states = []
    return {name: (states[i] if i < len(states) else "unknown") for i, name in enumerate(names)}


def fetch(url, cafile):
    """GET url without any proxy; TLS verified against the cluster CA when it is here."""
    if cafile and os.path.exists(cafile):
        context = ssl.create_default_context(cafile=cafile)
    else:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    opener = urllib.request.build_opener(
        urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=context)
    )
    try:
        with opener.open(url, timeout=TIMEOUT) as answer:
            return {"status": answer.status, "body": answer.read(4000).decode("utf-8", "replace")}
    except urllib.error.HTTPError as error:
        return {"status": error.code, "body": error.read(4000).decode("utf-8", "replace")}
    except Exception as error:  # refused, timed out, TLS: all mean "not answering"
        return {"status": 0, "error": str(getattr(error, "reason", error))}


def etcd_quota(path):
    """etcd's --quota-backend-bytes from its static pod manifest (None: no manifest)."""
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except OSError:
        return None
    found = re.search(r"--quota-backend-bytes=(\d+)", text)
    return int(found.group(1)) if found else 2 * 1024**3  # etcd's default


cafile = ARGS.get("cafile")
urls = ARGS.get("urls", {})
with ThreadPoolExecutor(max_workers=max(1, len(urls))) as pool:
    answers = {key: pool.submit(fetch, url, cafile) for key, url in urls.items()}
    states = service_states(ARGS.get("services", []))
result = {
    "services": states,
    "urls": {key: answer.result() for key, answer in answers.items()},
    "ca": bool(cafile and os.path.exists(cafile)),
}
if ARGS.get("etcd_manifest"):
    result["etcd_quota"] = etcd_quota(ARGS["etcd_manifest"])
print(json.dumps(result))
