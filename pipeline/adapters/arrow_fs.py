"""A pyarrow filesystem over an object store, so that readers (pyarrow.dataset, DuckDB through
Arrow) read Parquet straight from where the snapshots are, with no copy.

    filesystem, base = arrow_filesystem(store)
    dataset = pyarrow.dataset.dataset([f"{base}/{key}" for key in keys], filesystem=filesystem)

- `LocalObjectStore`: `pyarrow.fs.LocalFileSystem` and the store's root folder.
- `BlobObjectStore`: `pyarrow.fs.AzureFileSystem` for the store's account and `CONTAINER/PREFIX`
  (pyarrow's Azure paths start with the container). A store opened with a shared key (Azurite's
  connection string) hands pyarrow the same account, key and endpoint; one opened with
  DefaultAzureCredential gives pyarrow no key, and pyarrow then uses its own default Azure
  credential chain (managed identity, workload identity, environment, Azure CLI).
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import urlparse

import pyarrow.fs as pafs

from pipeline.adapters.local_store import LocalObjectStore
from pipeline.ports import ObjectStore

if TYPE_CHECKING:  # imported when needed: local-only readers never load the Azure SDK
    from pipeline.adapters.blob_store import BlobObjectStore

DEFAULT_BLOB_AUTHORITY = ".blob.core.windows.net"


def arrow_filesystem(store: ObjectStore) -> tuple[pafs.FileSystem, str]:
    """(filesystem, base path): the object of `key` is at `f"{base}/{key}"` in the filesystem."""
    if isinstance(store, LocalObjectStore):
        return pafs.LocalFileSystem(), str(store.root)
    from pipeline.adapters.blob_store import BlobObjectStore

    if isinstance(store, BlobObjectStore):
        return _azure_filesystem(store)
    raise TypeError(f"no pyarrow filesystem for {type(store).__name__} ({store.url})")


def _azure_filesystem(store: BlobObjectStore) -> tuple[pafs.FileSystem, str]:
    container = store.container
    account = container.account_name
    if not account:
        raise ValueError(f"{store.url}: the Blob client names no storage account")
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
    filesystem = pafs.AzureFileSystem(
        account_name=account,
        account_key=account_key if isinstance(account_key, str) and account_key else None,
        blob_storage_authority=blob_authority,
        blob_storage_scheme=scheme,
        dfs_storage_authority=dfs_authority,
        dfs_storage_scheme=scheme,
    )
    name = container.container_name
    return filesystem, f"{name}/{store.prefix}" if store.prefix else name
