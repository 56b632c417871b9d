"""What users of a cluster see while it changes: the API through the virtual IP, and a
Deployment's available pods (for the upgrade test and bench/upgrade.py)."""

from __future__ import annotations

import json
import ssl
import subprocess
import threading
import time
import urllib.request

from tests.e2e.conftest import K8sboot


class Watch:
    """The API through the virtual IP every 100 ms (anonymous /version, as kubeadm allows
    it), and the Deployment under its budget every second, from the operator's machine."""

    def __init__(self, cluster: K8sboot, deployment: str):
        self.url = f"https://{cluster.lab.subnet}.10:6443/version"
        self.cluster = cluster
        self.deployment = deployment
        self.asked = 0
        self.failed: list[str] = []
        self.longest_gap = 0.0
        self.fewest_available: int | None = None
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._api), threading.Thread(target=self._pods)]

    def __enter__(self) -> Watch:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()

    def _api(self) -> None:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE  # the answer is what counts, not who gives it
        last_ok = time.monotonic()
        while not self._stop.wait(0.1):
            self.asked += 1
            try:
                with urllib.request.urlopen(self.url, timeout=2, context=context) as answer:
                    answer.read()
                now = time.monotonic()
                self.longest_gap = max(self.longest_gap, now - last_ok)
                last_ok = now
            except OSError as error:
                self.failed.append(f"{time.strftime('%H:%M:%S')} {error}")

    def _pods(self) -> None:
        while not self._stop.wait(1.0):
            try:
                found = self.cluster.kubectl("get", "deployment", self.deployment, "-o", "json")
            except subprocess.SubprocessError:  # the API watch counts those
                continue
            available = json.loads(found.stdout).get("status", {}).get("availableReplicas", 0)
            if self.fewest_available is None or available < self.fewest_available:
                self.fewest_available = available
