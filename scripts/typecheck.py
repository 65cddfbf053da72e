"""Type-check the llmping package with mypy and the project's [tool.mypy] settings.

Run `python scripts/typecheck.py` (extra arguments go to mypy). The exit status is
mypy's.

Why the symlink tree: the source folders are mapped onto package names by setuptools'
package-dir (agent/ is llmping.agent, proto/llmping/v1/ is llmping.v1, ...). mypy
cannot follow that mapping, neither from the source tree, where agent/ looks like a
top-level package named agent, nor through the editable install, whose import hook
mypy does not run. So this script lays out build/typecheck/llmping/ as the installed
package would look, with symlinks to the real files, and checks that package. Error
messages name paths under build/typecheck/; the part after llmping/ maps back through
package-dir in pyproject.toml (llmping/agent/load.py is agent/load.py).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TREE_ROOT = ROOT / "build" / "typecheck"
PACKAGE = "llmping"


def read_package_dirs() -> dict[str, Path]:
    """Return pyproject's package-dir mapping as package name -> source folder."""
    with (ROOT / "pyproject.toml").open("rb") as file:
        pyproject = tomllib.load(file)
    mapping = pyproject["tool"]["setuptools"]["package-dir"]
    return {name: ROOT / folder for name, folder in mapping.items()}


def link_package_tree(package_dirs: dict[str, Path]) -> Path:
    """Rebuild build/typecheck/llmping from symlinks and return its path.

    The top package's folder gets one symlink per entry, so the mapped subpackages can
    sit beside them. Each mapped subpackage is one symlink to its whole folder.
    """
    shutil.rmtree(TREE_ROOT, ignore_errors=True)
    package_root = TREE_ROOT / PACKAGE
    package_root.mkdir(parents=True)

    for entry in package_dirs[PACKAGE].iterdir():
        if entry.name != "__pycache__":
            (package_root / entry.name).symlink_to(entry)

    # Sorted so that llmping.agent is linked before a nested llmping.agent.x mapping,
    # which would then already sit inside the linked folder.
    for name, folder in sorted(package_dirs.items()):
        if name == PACKAGE:
            continue
        link = TREE_ROOT.joinpath(*name.split("."))
        if link.parent.is_symlink() or link.exists():
            continue
        link.symlink_to(folder, target_is_directory=True)
    return package_root


def run_mypy(package_root: Path, extra_args: list[str]) -> int:
    """Run mypy on the linked package and return its exit status."""
    command = [
        sys.executable,
        "-m",
        "mypy",
        "--config-file",
        str(ROOT / "pyproject.toml"),
        "--cache-dir",
        str(ROOT / "build" / "mypy-cache"),
        *extra_args,
        str(package_root.relative_to(ROOT)),
    ]
    print("+", " ".join(command), flush=True)
    environment = dict(os.environ)
    # Only the linked tree may provide llmping; an editable install's path entry must
    # not be searched first.
    environment.pop("MYPYPATH", None)
    return subprocess.run(command, cwd=ROOT, env=environment, check=False).returncode


def main() -> int:
    package_root = link_package_tree(read_package_dirs())
    return run_mypy(package_root, sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
