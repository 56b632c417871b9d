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
from k8sboot.etcd.catalogue import Manifest, plain_name
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
                if key.endswith(".json") and "/" not in key[len(self.prefix) :]:
                    body = self._call(
                        f"reading {key}", self.client.get_object, Bucket=self.bucket, Key=key
                    )
                    found.append(Manifest.from_json(body["Body"].read(), f"{self.location}{key}"))
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
        try:
            head = self.client.head_object(Bucket=self.bucket, Key=self._key(file_name))
        except self._errors:
            return None
        return int(head["ContentLength"])

    def _temporary(self, file_name: str) -> Path:
        private_dir(self.cache)
        return self.cache / f".{secrets.token_hex(4)}-{plain_name(file_name, self.location)}"

    @contextmanager
    def writer(self, file_name: str) -> Iterator[BinaryIO]:
        path = self._temporary(file_name)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as handle:
                yield handle
            key = self._key(file_name)
            self._call(f"uploading {key}", self.client.upload_file, str(path), self.bucket, key)
        finally:
            path.unlink(missing_ok=True)

    @contextmanager
    def local_copy(self, file_name: str) -> Iterator[Path]:
        path = self._temporary(file_name)
        key = self._key(file_name)
        try:
            self._call(f"downloading {key}", self.client.download_file, self.bucket, key, str(path))
            path.chmod(0o600)
            yield path
        finally:
            path.unlink(missing_ok=True)

    def delete(self, manifest: Manifest) -> None:
        keys = [
            {"Key": self._key(manifest.file["name"])},
            {"Key": self._key(f"{manifest.name}.json")},
        ]
        self._call(
            "deleting", self.client.delete_objects, Bucket=self.bucket, Delete={"Objects": keys}
        )
