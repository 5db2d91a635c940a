#!/usr/bin/env python3
"""Build the Azure Functions zip-deploy package (`make package`).

    python scripts/package_functions.py [--out dist/chargeback-functions.zip] [--no-deps]

The zip holds, at its root, what the Python worker expects:

    function_app.py  host.json  pipeline/ (with pipeline/data/prices.csv)
    .python_packages/lib/site-packages/   the dependencies, installed with
        pip install --target ... -c constraints.txt '.[functions]'

The dependencies include compiled wheels (pyarrow, duckdb, msgspec, cryptography), so build on
Linux x86-64 with the Python version the Function app runs (see docs/functions.md), or deploy
with a remote build instead. `--no-deps` leaves them out (a quick check of the layout).
"""

from __future__ import annotations

import argparse
import platform
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
APP_FILES = ("function_app.py", "host.json")
PACKAGE = "pipeline"
SITE_PACKAGES = Path(".python_packages/lib/site-packages")
DEFAULT_OUT = ROOT / "dist" / "chargeback-functions.zip"
ZIP_TIME = (1980, 1, 1, 0, 0, 0)  # fixed timestamps: the same sources give the same zip


def build(out: Path, *, deps: bool = True, python: str = sys.executable) -> Path:
    """Stage the app in a temporary folder and zip it to `out`; returns `out`."""
    with tempfile.TemporaryDirectory(prefix="chargeback-package-") as folder:
        staging = Path(folder)
        for name in APP_FILES:
            shutil.copy2(ROOT / name, staging / name)
        shutil.copytree(ROOT / PACKAGE, staging / PACKAGE,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc", ".*"))
        if deps:
            install_dependencies(staging / SITE_PACKAGES, python)
        out.parent.mkdir(parents=True, exist_ok=True)
        write_zip(staging, out)
    return out


def install_dependencies(site_packages: Path, python: str) -> None:
    subprocess.run(
        [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
         "--target", str(site_packages), "-c", "constraints.txt", ".[functions]"],
        cwd=ROOT, check=True)
    # pip also installed this project; the copy at the zip's root is the one to import.
    shutil.rmtree(site_packages / PACKAGE, ignore_errors=True)
    shutil.rmtree(site_packages / "bin", ignore_errors=True)  # console scripts: no use in Functions


def write_zip(staging: Path, out: Path) -> None:
    temporary = out.with_name(f".{out.name}.tmp")
    with zipfile.ZipFile(temporary, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6) as archive:
        for path in sorted(staging.rglob("*")):
            if path.is_file():
                info = zipfile.ZipInfo(path.relative_to(staging).as_posix(), ZIP_TIME)
                info.compress_type = zipfile.ZIP_DEFLATED
                info.external_attr = (path.stat().st_mode & 0o777 | 0o100000) << 16
                archive.writestr(info, path.read_bytes())
    temporary.replace(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build the Azure Functions zip-deploy package.")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"the zip to write (default {DEFAULT_OUT})")
    parser.add_argument("--no-deps", action="store_true", help="leave out .python_packages (layout check only)")
    parser.add_argument("--python", default=sys.executable, help="interpreter whose pip installs the dependencies")
    args = parser.parse_args(argv)
    if not args.no_deps and (sys.platform != "linux" or platform.machine() not in ("x86_64", "AMD64")):
        print(f"warning: building on {sys.platform}/{platform.machine()}; Azure Functions runs Linux x86-64, "
              "so compiled wheels may not load there", file=sys.stderr)
    out = build(args.out.resolve(), deps=not args.no_deps, python=args.python)
    deps = "no dependencies" if args.no_deps else f"dependencies installed by {args.python}"
    print(f"wrote {out} ({out.stat().st_size:,} bytes, {deps})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
