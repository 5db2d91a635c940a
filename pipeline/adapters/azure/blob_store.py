"""Object store on Azure Blob Storage (`az://CONTAINER/PREFIX` URLs), the production twin of
`LocalObjectStore`.

Each key is one block blob named `PREFIX/KEY` in the container. The guarantees of the
`ObjectStore` port hold on the server, not in this process:

- A block-blob upload is all-or-nothing: a single Put Blob, or staged blocks that become
  visible only when the block list is committed. Readers see the whole old object, the whole
  new one, or none; never a partial one.
- `put(..., overwrite=False)` is create-if-absent on the server (`If-None-Match: *`): of any
  number of writers racing for one key, across processes and machines, exactly one wins and
  the others get False. Each upload carries a random writer token in its metadata, so a write
  whose response was lost and that the SDK retried still reports True to the writer that made it.
- `get` reads one version: the SDK pins the ETag of the first chunk for the following ones;
  when the object is replaced mid-read the read starts again.
- `list` hides names with a segment starting with "." (like the local store's temporary files)
  and directory markers of hierarchical-namespace accounts.

`open_blob_store` builds the store from a URL and either a connection string (Azurite, the
local emulator) or an account URL with `DefaultAzureCredential` (managed identity in Azure).
"""

from __future__ import annotations

import contextlib
import io
import re
import uuid
from typing import TYPE_CHECKING, BinaryIO
from urllib.parse import urlparse

from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.storage.blob import BlobServiceClient, ContainerClient

from pipeline.ports import UserError

if TYPE_CHECKING:
    from pathlib import Path

    import pyarrow.fs as pafs

SCHEME = "az"
WRITER_METADATA = "chargebackwriter"
READ_ATTEMPTS = 3
# Container names: 3-63 characters, lowercase letters, digits and single hyphens, letter or digit at both ends.
CONTAINER_NAME = re.compile(r"^(?=.{3,63}$)[a-z0-9]+(-[a-z0-9]+)*$")


class BlobObjectStore:
    """An `ObjectStore` over one Blob container, under an optional name prefix."""

    def __init__(self, container_client: ContainerClient, prefix: str = "", *, client_id: str | None = None) -> None:
        self.container = container_client
        self.client_id = client_id  # the managed identity pyarrow signs in with (token credentials only)
        self.prefix = prefix.strip("/")
        if self.prefix:
            _check_key(self.prefix)
        name = container_client.container_name
        self.url = f"{SCHEME}://{name}/{self.prefix}" if self.prefix else f"{SCHEME}://{name}"
        self.local_root: Path | None = None  # remote: read through the SDK or pyarrow

    def blob_name(self, key: str) -> str:
        """The blob's name in the container for a key of this store."""
        _check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def put(self, key: str, data: bytes, *, overwrite: bool) -> bool:
        blob = self.container.get_blob_client(self.blob_name(key))
        token = writer_token()
        try:
            blob.upload_blob(data, overwrite=overwrite, metadata={WRITER_METADATA: token})
        except ResourceExistsError:
            if overwrite:
                raise
            # Someone else's object, or ours: a retry after a lost response finds its own first try.
            try:
                return blob.get_blob_properties().metadata.get(WRITER_METADATA) == token
            except ResourceNotFoundError:
                return False  # it was deleted since; we still did not create it
        return True

    def get(self, key: str) -> bytes | None:
        blob = self.container.get_blob_client(self.blob_name(key))
        for attempt in range(READ_ATTEMPTS):
            try:
                return blob.download_blob().readall()
            except ResourceNotFoundError:
                return None
            except ResourceModifiedError:
                # Replaced between two chunks of one read: read the new version from the start.
                if attempt == READ_ATTEMPTS - 1:
                    raise
        raise AssertionError("unreachable")

    def open(self, key: str) -> BinaryIO | None:
        data = self.get(key)
        return None if data is None else io.BytesIO(data)

    def arrow_filesystem(self) -> tuple[pafs.FileSystem, str]:
        from pipeline.adapters.azure.arrow_fs import azure_filesystem

        return azure_filesystem(self.container, self.prefix, self.url, self.client_id)

    def list(self, prefix: str) -> list[str]:
        """Keys under the folder `prefix` ("" for all), sorted, relative to the store root."""
        folder = prefix.strip("/")
        if folder:
            _check_key(folder)
        root = f"{self.prefix}/" if self.prefix else ""
        start = f"{root}{folder}/" if folder else root
        keys = []
        for blob in self.container.list_blobs(name_starts_with=start or None, include=["metadata"]):
            key = blob.name[len(root):]
            if any(part.startswith(".") for part in key.split("/")):
                continue
            if (blob.metadata or {}).get("hdi_isfolder") == "true":
                continue
            keys.append(key)
        return sorted(keys)


def writer_token() -> str:
    """A fresh random token that marks one upload as this writer's."""
    return uuid.uuid4().hex


def _check_key(key: str) -> None:
    parts = key.split("/")
    if not key or any(part in ("", ".", "..") for part in parts):
        raise UserError(f"key {key!r} leaves the store root or has an empty, '.' or '..' segment")


def parse_blob_url(url: str) -> tuple[str, str]:
    """`az://CONTAINER/PREFIX` -> (container, prefix)."""
    parsed = urlparse(url)
    if parsed.scheme != SCHEME or parsed.query or parsed.fragment:
        raise UserError(f"{url!r}: expected az://CONTAINER/PREFIX")
    container = parsed.netloc
    if not CONTAINER_NAME.match(container):
        raise UserError(f"{url!r}: {container!r} is not a valid Blob container name "
                         "(3-63 lowercase letters, digits and single hyphens)")
    return container, parsed.path.strip("/")


def open_blob_store(url: str, *, account_url: str | None, connection_string: str | None,
                    create_container: bool = False, client_id: str | None = None) -> BlobObjectStore:
    """The store for `az://CONTAINER/PREFIX`.

    With a connection string (Azurite: `UseDevelopmentStorage=true` or the full development
    string) it is used as is; otherwise the account URL (https://ACCOUNT.blob.core.windows.net)
    with `DefaultAzureCredential`. `create_container` creates a missing container: for tests
    and local use only; in production the container is provisioned with the account."""
    container, prefix = parse_blob_url(url)
    if connection_string:
        service = BlobServiceClient.from_connection_string(connection_string)
    elif account_url:
        from azure.identity import DefaultAzureCredential

        service = BlobServiceClient(account_url, credential=DefaultAzureCredential())
    else:
        raise UserError(f"{url}: set CHARGEBACK_STORAGE_ACCOUNT_URL (https://ACCOUNT.blob.core.windows.net, "
                         "signed in with DefaultAzureCredential) or AZURE_STORAGE_CONNECTION_STRING "
                         "(the local emulator) to use Blob Storage")
    client = service.get_container_client(container)
    if create_container:
        with contextlib.suppress(ResourceExistsError):
            client.create_container()
    return BlobObjectStore(client, prefix, client_id=None if connection_string else client_id)
