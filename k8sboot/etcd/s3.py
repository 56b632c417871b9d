"""The backup catalogue in an S3-compatible bucket (the optional extra `k8sboot[s3]`,
boto3). Files are encrypted (when a key is set) before they leave the operator's machine;
they pass through a private cache in the state directory, removed after each use.
Credentials come from boto3's usual sources (environment, ~/.aws), never the cluster file.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

from k8sboot.errors import MachineError, UserError
from k8sboot.etcd.catalogue import Manifest, open_part, plain_name, sweep_parts
from k8sboot.state import private_dir


class S3Store:
    def __init__(self, settings: Any, state_dir: Path):
        try:
            import boto3
            from botocore.exceptions import BotoCoreError, ClientError
        except ImportError:
            raise UserError(
                "backup.s3 needs boto3: pip install 'k8sboot[s3]' (or set backup.directory)"
            ) from None
        self._errors = (BotoCoreError, ClientError)
        self.client = boto3.client(
            "s3", endpoint_url=settings.endpoint, region_name=settings.region
        )
        self.bucket = settings.bucket
        self.prefix = settings.prefix.strip("/") + "/" if settings.prefix.strip("/") else ""
        self.location = f"s3://{self.bucket}/{self.prefix}"
        self.cache = state_dir / "s3-cache"
        self.unreadable: dict[str, str] = {}

    def _key(self, name: str) -> str:
        return self.prefix + plain_name(name, self.location)

    def _call(self, what: str, fn, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except self._errors as exc:
            raise MachineError(f"{self.location}: {what} failed: {exc}") from None

    def manifests(self) -> list[Manifest]:
        found = []
        paginator = self.client.get_paginator("list_objects_v2")
        pages = self._call(
            "listing", lambda: list(paginator.paginate(Bucket=self.bucket, Prefix=self.prefix))
        )
        for page in pages:
            for item in page.get("Contents", []):
                key = item["Key"]
                name = key[len(self.prefix) :]
                if not key.endswith(".json") or "/" in name:
                    continue
                try:
                    body = self._call(
                        f"reading {key}", self.client.get_object, Bucket=self.bucket, Key=key
                    )
                    found.append(Manifest.from_json(body["Body"].read(), f"{self.location}{name}"))
                except (UserError, MachineError) as error:
                    self.unreadable[name] = str(error)
        return sorted(found, key=lambda m: (m.created, m.name))

    def read_manifest(self, name: str) -> Manifest | None:
        key = self._key(f"{name}.json")
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=key)
        except self._errors as exc:
            if "NoSuchKey" in str(exc) or "404" in str(exc):
                return None
            raise MachineError(f"{self.location}: reading {key} failed: {exc}") from None
        return Manifest.from_json(body["Body"].read(), f"{self.location}{key}")

    def write_manifest(self, manifest: Manifest) -> None:
        key = self._key(f"{manifest.name}.json")
        self._call(
            f"writing {key}",
            self.client.put_object,
            Bucket=self.bucket,
            Key=key,
            Body=manifest.to_json(),
        )

    def file_size(self, file_name: str) -> int | None:
        """The size, None when there is no such object; a MachineError when S3 does not say
        (denied, unreachable): that is not a missing file."""
        key = self._key(file_name)
        try:
            head = self.client.head_object(Bucket=self.bucket, Key=key)
        except self._errors as exc:
            code = getattr(exc, "response", {}).get("Error", {}).get("Code")
            if code in NOT_FOUND:
                return None
            raise MachineError(f"{self.location}: asking for {key} failed: {exc}") from None
        return int(head["ContentLength"])

    @contextmanager
    def _temporary(self, file_name: str) -> Iterator[tuple[Path, int]]:
        """A private file in the cache (a plain snapshot, without a key), locked while in
        use (see sweep) and removed after."""
        private_dir(self.cache)
        path = self.cache / f".{secrets.token_hex(4)}-{plain_name(file_name, self.location)}"
        fd = open_part(path)
        try:
            yield path, fd
        finally:
            path.unlink(missing_ok=True)
            os.close(fd)

    @contextmanager
    def writer(self, file_name: str) -> Iterator[BinaryIO]:
        with self._temporary(file_name) as (path, fd):
            with open(os.dup(fd), "wb") as handle:
                yield handle
            key = self._key(file_name)
            self._call(f"uploading {key}", self.client.upload_file, str(path), self.bucket, key)

    @contextmanager
    def local_copy(self, file_name: str) -> Iterator[Path]:
        key = self._key(file_name)
        with self._temporary(file_name) as (path, fd):
            with open(os.dup(fd), "wb") as handle:  # into the locked file, not a new one
                self._call(
                    f"downloading {key}", self.client.download_fileobj, self.bucket, key, handle
                )
            yield path

    def remove(self, file_name: str) -> None:
        """Delete an object; a MachineError naming what S3 refused (Object Lock, denied)."""
        key = self._key(file_name)
        answer = self._call(
            f"deleting {key}",
            self.client.delete_objects,
            Bucket=self.bucket,
            Delete={"Objects": [{"Key": key}]},
        )
        refused = [e for e in answer.get("Errors", []) if e.get("Code") not in NOT_FOUND]
        if refused:
            why = "; ".join(f"{e.get('Code')}: {e.get('Message')}" for e in refused)
            raise MachineError(f"{self.location}: {key} was not deleted ({why})")

    def delete(self, manifest: Manifest) -> None:
        # The file first: a manifest outlives its file (MISSING), never the other way round.
        self.remove(manifest.file["name"])
        self.remove(f"{manifest.name}.json")

    def sweep(self) -> list[str]:
        return sweep_parts(self.cache, ".*")


NOT_FOUND = ("404", "NoSuchKey", "NotFound")
