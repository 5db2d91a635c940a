"""A pyarrow filesystem over a Blob container (`BlobObjectStore.arrow_filesystem`), so that
readers (pyarrow.dataset, DuckDB through Arrow) read Parquet straight from Blob Storage, with no copy.

`pyarrow.fs.AzureFileSystem` for the container's account, and the base path `CONTAINER/PREFIX`
(pyarrow's Azure paths start with the container). A store opened with a shared key (Azurite's
connection string) hands pyarrow the same account, key and endpoint; one opened with
DefaultAzureCredential gives pyarrow no key, and pyarrow then uses its own default Azure
credential chain (managed identity, workload identity, environment, Azure CLI).
"""

from __future__ import annotations

from urllib.parse import urlparse

import pyarrow.fs as pafs
from azure.storage.blob import ContainerClient

from pipeline.ports import UserError

DEFAULT_BLOB_AUTHORITY = ".blob.core.windows.net"


def azure_filesystem(container: ContainerClient, prefix: str, url: str,
                     client_id: str | None = None) -> tuple[pafs.FileSystem, str]:
    """(filesystem, base path) of the objects under `prefix` in the container (`url`: the store's).
    Without a key, pyarrow's credential chain signs in; `client_id` names the user-assigned
    managed identity for it (Arrow's C++ chain does not read AZURE_CLIENT_ID: without it, it asks
    for the system-assigned identity; apache/arrow cpp/src/arrow/filesystem/azurefs.cc)."""
    account = container.account_name
    if not account:
        raise UserError(f"{url}: the Blob client names no storage account")
    endpoint = urlparse(container.url)
    host = endpoint.netloc
    if host.lower().startswith(f"{account.lower()}."):
        # https://ACCOUNT.blob.core.windows.net: pyarrow puts the account before an authority
        # that starts with a dot; the default one needs no option at all.
        blob_authority: str | None = host[len(account):]
    else:
        # Path-style endpoint (Azurite: http://127.0.0.1:10000/ACCOUNT): an authority without a
        # leading dot makes pyarrow put the account in the path.
        blob_authority = host
    dfs_authority = blob_authority
    if blob_authority is not None and blob_authority.startswith(".blob."):
        dfs_authority = ".dfs." + blob_authority[len(".blob."):]
    if blob_authority == DEFAULT_BLOB_AUTHORITY:
        blob_authority = dfs_authority = None
    scheme = endpoint.scheme or "https"
    # Shared-key credentials (from a connection string) carry the key; token credentials do not.
    account_key = getattr(container.credential, "account_key", None)
    key = account_key if isinstance(account_key, str) and account_key else None
    filesystem = pafs.AzureFileSystem(
        account_name=account,
        account_key=key,
        client_id=client_id if key is None else None,
        blob_storage_authority=blob_authority,
        blob_storage_scheme=scheme,
        dfs_storage_authority=dfs_authority,
        dfs_storage_scheme=scheme,
    )
    name = container.container_name
    return filesystem, f"{name}/{prefix}" if prefix else name
