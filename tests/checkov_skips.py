"""checkov over terraform/ with its inline skips (`#checkov:skip=ID:reason`, where checkov itself
reads them): what fails as the configuration stands, and whether every skip is still needed where
its reason says. A skip's reason starts with `Fails in ENV and ENV only.` when the check fails in
some environments only; without it, the check must fail in every one. A skip is matched to the
failures of the resource block it sits in (checkov's file_line_range), not just to its file, so a
skip left on the wrong resource of a file is stale too."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

# `defaults`: no variables file, as a user runs `checkov -d terraform`.
ENVIRONMENTS = ("defaults", "dev", "staging", "prod")
SKIP = re.compile(r"#\s*checkov:skip=(?P<check>CKV2?_[A-Z0-9]+_\d+):(?P<reason>.*)$")
ONLY = re.compile(r"^Fails in (?P<names>[a-z, ]+?) only\.")
Failure = tuple[str, str, int, int]  # (file under terraform/, check id, first and last line of the resource)


@dataclass(frozen=True, slots=True)
class Skip:
    path: str  # e.g. modules/apim/main.tf
    line: int
    check: str
    reason: str

    @property
    def environments(self) -> frozenset[str]:
        only = ONLY.match(self.reason)
        if only is None:
            return frozenset(ENVIRONMENTS)
        return frozenset(name.strip() for name in re.split(r",| and ", only["names"]) if name.strip())


def inline_skips(tree: Path) -> list[Skip]:
    found = []
    for path in sorted(tree.rglob("*.tf")):
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if (match := SKIP.search(line)) is not None:
                found.append(Skip(path.relative_to(tree).as_posix(), number, match["check"], match["reason"].strip()))
    return found


def without_skips(tree: Path, into: Path) -> Path:
    """A copy of the configuration with every inline skip blanked out (an empty line in its place,
    so that every resource keeps its line numbers and a failure maps back to the skips above it)."""
    shutil.copytree(tree, into, ignore=shutil.ignore_patterns(".terraform", "*.tfstate*"))
    for path in into.rglob("*.tf"):
        text = path.read_text(encoding="utf-8")
        path.write_text("".join("\n" if SKIP.search(line) else line for line in text.splitlines(keepends=True)),
                        encoding="utf-8")
    return into


def covers(skip: Skip, failure: Failure) -> bool:
    """The skip sits in the resource block that failed the check."""
    path, check, first, last = failure
    return (path, check) == (skip.path, skip.check) and first <= skip.line <= last


def uncovered(skips: list[Skip], failed: set[Failure]) -> set[Failure]:
    """The failures no skip sits on."""
    return {failure for failure in failed if not any(covers(skip, failure) for skip in skips)}


def failures(checkov: Path, tree: Path, environment: str) -> set[Failure]:
    """The (file, check) pairs checkov reports failed for one environment's variables."""
    variables = [] if environment == "defaults" else [
        "--var-file", str(tree / "environments" / f"{environment}.tfvars")]
    result = subprocess.run(
        [str(checkov), "-d", str(tree), "--framework", "terraform", "--quiet", "--compact", "--skip-download",
         *variables, "-o", "json"], capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode in (0, 1), result.stderr[-2000:]
    reports = json.loads(result.stdout)
    failed: set[Failure] = set()
    for report in reports if isinstance(reports, list) else [reports]:
        if isinstance(report, dict) and "summary" in report:
            assert report["summary"]["parsing_errors"] == 0, f"checkov could not parse {tree} ({environment})"
            failed |= {(check["file_path"].lstrip("/"), check["check_id"], *check["file_line_range"])
                       for check in report["results"]["failed_checks"]}
    return failed


def problems(skips: list[Skip], as_is: dict[str, set[Failure]], stripped: dict[str, set[Failure]]) -> list[str]:
    """What is wrong: a check that fails as the configuration stands, a skip without a reason, a
    skip no longer needed (stale), a skip whose environments are not the ones it fails in."""
    found = [f"{environment}: {check} fails in terraform/{path}: fix it, or skip it there with "
             f"#checkov:skip={check}:REASON" for environment, failed in as_is.items()
             for path, check in sorted({(path, check) for path, check, _, _ in failed})]
    for skip in skips:
        where = f"terraform/{skip.path}:{skip.line}: {skip.check}"
        if len(skip.reason) <= 20:
            found.append(f"{where}: give the reason")
        fails_in = {environment for environment, failed in stripped.items()
                    if any(covers(skip, failure) for failure in failed)}
        expected = skip.environments & stripped.keys()  # of the environments checked
        if not fails_in and expected:
            found.append(f"{where}: stale skip, the check passes on its resource in every environment: remove it")
        elif fails_in != expected:
            found.append(f"{where}: fails in {', '.join(sorted(fails_in))}, the reason says "
                         f"{', '.join(sorted(skip.environments))}: start it with 'Fails in ... only.' or fix it")
    return found
