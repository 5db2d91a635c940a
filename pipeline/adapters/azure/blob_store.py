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
from collections.abc import Iterator
from typing import TYPE_CHECKING, BinaryIO
from urllib.parse import urlparse

from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.storage.blob import BlobServiceClient, ContainerClient

from pipeline.adapters.azure.identity import shared_credential
from pipeline.ports import AccessRefused, MissingResource, StoreUnavailable, UserError

if TYPE_CHECKING:
    from pathlib import Path

    import pyarrow.fs as pafs

SCHEME = "az"
WRITER_METADATA = "chargebackwriter"
READ_ATTEMPTS = 3
PROBE_RETRIES = 0  # the SDK backs off 15 s, then 18 s more: a probe of an absent account fails at once
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

    def exists(self, key: str) -> bool:
        return bool(self.container.get_blob_client(self.blob_name(key)).exists())  # one HEAD request

    def open(self, key: str) -> BinaryIO | None:
        data = self.get(key)
        return None if data is None else io.BytesIO(data)

    def arrow_filesystem(self) -> tuple[pafs.FileSystem, str]:
        from pipeline.adapters.azure.arrow_fs import azure_filesystem

        return azure_filesystem(self.container, self.prefix, self.url, self.client_id)

    def delete(self, key: str) -> bool:
        try:
            self.container.get_blob_client(self.blob_name(key)).delete_blob()
        except ResourceNotFoundError:
            return False
        return True

    def list(self, prefix: str, starting: str = "") -> list[str]:
        """Keys under the folder `prefix` ("" for all), sorted, relative to the store root; with
        `starting`, those whose name in the folder starts with it (the listing's own prefix)."""
        folder = prefix.strip("/")
        if folder:
            _check_key(folder)
        root = f"{self.prefix}/" if self.prefix else ""
        start = (f"{root}{folder}/" if folder else root) + starting
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
        service = BlobServiceClient(account_url, credential=shared_credential())
    else:
        raise UserError(f"{url}: set CHARGEBACK_STORAGE_ACCOUNT_URL (https://ACCOUNT.blob.core.windows.net, "
                         "signed in with DefaultAzureCredential) or AZURE_STORAGE_CONNECTION_STRING "
                         "(the local emulator) to use Blob Storage")
    client = service.get_container_client(container)
    with setup_errors(url, service.account_name or "?", bool(connection_string)):
        if create_container:
            with contextlib.suppress(ResourceExistsError):
                client.create_container()
        try:
            # No retry for this probe: an account that does not answer is told at once, not after
            # the SDK's retries with back-off (about 80 s); the store's own reads and writes keep
            # the default retries, and a command that fails here can simply be run again.
            client.get_container_properties(retry_total=PROBE_RETRIES)
        except ResourceNotFoundError:
            raise MissingResource(f"{url}: Blob container {container!r} does not exist in storage account "
                                  f"{service.account_name!r}: create it (terraform apply does), or set "
                                  "CHARGEBACK_CREATE_RESOURCES=1 for the local emulator") from None
    return BlobObjectStore(client, prefix, client_id=None if connection_string else client_id)


@contextlib.contextmanager
def setup_errors(url: str, account: str, with_key: bool) -> Iterator[None]:
    """The SDK's errors while opening a store, as one line naming the account and the fix."""
    try:
        yield
    except (ServiceRequestError, ServiceResponseError) as error:
        raise StoreUnavailable(f"{url}: cannot reach Blob Storage account {account!r} ({_first_line(error)}): "
                               "check CHARGEBACK_STORAGE_ACCOUNT_URL (or the connection string) and that this "
                               "machine can reach it") from None
    except ClientAuthenticationError as error:
        raise AccessRefused(f"{url}: no Microsoft Entra ID credential for Blob Storage ({_first_line(error)}): "
                            "sign in (az login) or run with a managed identity") from None
    except HttpResponseError as error:
        if error.status_code == 403:
            fix = ("the account key was refused: check AZURE_STORAGE_CONNECTION_STRING" if with_key else
                   "grant the identity Storage Blob Data Contributor on the account (terraform/modules/access "
                   "does), and check the account's network rules")
            raise AccessRefused(f"{url}: Blob Storage account {account!r} refused the request (403 "
                                f"{_code(error)}): {fix}") from None
        raise


def _code(error: HttpResponseError) -> str:
    code = getattr(error, "error_code", None)
    return str(getattr(code, "value", code) or "Forbidden")


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
