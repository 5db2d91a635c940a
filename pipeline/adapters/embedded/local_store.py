"""Object store on a local folder (`file://` URLs): the embedded stand-in for Blob Storage.

A write goes to a hidden temporary file in the same folder, is flushed to disk, and is then
published in one step: `os.replace` to overwrite, `os.link` to create only if absent. Readers
never see a partial file, and a published file is never rewritten unless asked to.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from pipeline.ports import UserError

if TYPE_CHECKING:
    import pyarrow.fs as pafs


class LocalObjectStore:
    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.url = self.root.as_uri()
        self.local_root: Path | None = self.root

    def path(self, key: str) -> Path:
        """The file of `key`. A key naming no `..` stays under the root as written (a link the
        user put in the folder is followed, as for any file there); one that does is resolved and
        refused when it leaves the root. Resolving every key cost a Capture replay of 12,000
        files a second of system calls."""
        if not key.startswith("/") and ".." not in key.split("/"):
            return self.root / key
        target = (self.root / key).resolve()
        if not target.is_relative_to(self.root):
            raise UserError(f"key {key!r} leaves the store root {self.root}")
        return target

    def put(self, key: str, data: bytes, *, overwrite: bool) -> bool:
        target = self.path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        if not overwrite and target.exists():
            return False
        handle, temporary = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        try:
            with os.fdopen(handle, "wb") as file:
                file.write(data)
                file.flush()
                os.fsync(file.fileno())
            if overwrite:
                Path(temporary).replace(target)
                return True
            try:
                os.link(temporary, target)
            except FileExistsError:
                return False
            return True
        finally:
            Path(temporary).unlink(missing_ok=True)

    def get(self, key: str) -> bytes | None:
        try:
            return self.path(key).read_bytes()
        except (FileNotFoundError, IsADirectoryError):
            return None

    def exists(self, key: str) -> bool:
        return self.path(key).is_file()

    def open(self, key: str) -> BinaryIO | None:
        try:
            return self.path(key).open("rb")
        except (FileNotFoundError, IsADirectoryError):
            return None

    def delete(self, key: str) -> bool:
        try:
            self.path(key).unlink()
        except (FileNotFoundError, IsADirectoryError):
            return False
        return True

    def list(self, prefix: str, starting: str = "") -> list[str]:
        base = self.path(prefix) if prefix else self.root
        if not base.is_dir() or any(part.startswith(".") for part in Path(prefix).parts):
            return []
        start = base.relative_to(self.root).as_posix() if prefix else ""
        folder = f"{start}/" if start and start != "." else ""
        return sorted(key for key in _files(base, folder) if key.startswith(folder + starting))

    def arrow_filesystem(self) -> tuple[pafs.FileSystem, str]:
        import pyarrow.fs as pafs  # here: readers that never scan Parquet do not load it

        return pafs.LocalFileSystem(), str(self.root)


def _files(folder: Path | str, prefix: str) -> Iterator[str]:
    """The keys of the files under `folder` (links followed), skipping hidden names: temporary
    files and any folder starting with "." are not objects."""
    with os.scandir(folder) as entries:
        for entry in entries:
            if entry.name.startswith("."):
                continue
            if entry.is_dir():
                yield from _files(entry.path, f"{prefix}{entry.name}/")
            elif entry.is_file():
                yield f"{prefix}{entry.name}"
