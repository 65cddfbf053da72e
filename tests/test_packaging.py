"""The wheel installs everything under llmping.* and nothing at the top level.

The source folders (agent/, controller/, cli/, simulator/, proto/llmping/v1/) are mapped
onto llmping.* by setuptools' package-dir, and only packages listed in pyproject's
`packages` are installed: a new subpackage missing from that list would silently be
left out of the wheel.
"""

from __future__ import annotations

import configparser
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path, PurePosixPath
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
WHEEL_BUILD_TIMEOUT_S = 90.0
# Files besides the package folders that the build reads.
BUILD_INPUTS = ("pyproject.toml", "README.md", "README.zh-CN.md", "LICENSE")


def read_pyproject() -> dict[str, Any]:
    with (ROOT / "pyproject.toml").open("rb") as file:
        return tomllib.load(file)


def package_dirs() -> dict[str, str]:
    """Return the package-dir mapping, package name -> source folder."""
    mapping: dict[str, str] = read_pyproject()["tool"]["setuptools"]["package-dir"]
    return mapping


def listed_packages() -> set[str]:
    return set(read_pyproject()["tool"]["setuptools"]["packages"])


def package_name_of(folder: Path) -> str | None:
    """Return the package name a source folder installs as, or None when unmapped."""
    relative = folder.relative_to(ROOT).as_posix()
    # The longest mapped folder that contains this one decides the name.
    best: tuple[str, str] | None = None
    for name, source in package_dirs().items():
        if (relative == source or relative.startswith(source + "/")) and (
            best is None or len(source) > len(best[1])
        ):
            best = (name, source)
    if best is None:
        return None
    name, source = best
    rest = relative[len(source) :].strip("/")
    return name if not rest else name + "." + rest.replace("/", ".")


def source_package_folders() -> list[Path]:
    """Every folder with an __init__.py under the mapped source folders."""
    folders: list[Path] = []
    for source in package_dirs().values():
        for init in sorted((ROOT / source).rglob("__init__.py")):
            if "__pycache__" not in init.parts:
                folders.append(init.parent)
    return folders


def copy_build_inputs(destination: Path) -> None:
    """Copy what the build reads, so the build's own build/ folder stays out of the repo."""
    for name in BUILD_INPUTS:
        if (ROOT / name).exists():
            shutil.copy2(ROOT / name, destination / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for source in sorted(set(package_dirs().values())):
        shutil.copytree(ROOT / source, destination / source, ignore=ignore, dirs_exist_ok=True)


@pytest.fixture(scope="module")
def wheel_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    source_copy = tmp_path_factory.mktemp("source")
    out_dir = tmp_path_factory.mktemp("wheel")
    copy_build_inputs(source_copy)
    command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet"]
    command += ["--wheel-dir", str(out_dir), str(source_copy)]
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=WHEEL_BUILD_TIMEOUT_S, check=False
    )
    assert result.returncode == 0, f"pip wheel failed:\n{result.stdout}\n{result.stderr}"
    wheels = sorted(out_dir.glob("llmping-*.whl"))
    assert len(wheels) == 1, f"expected one llmping wheel in {out_dir}, found {wheels}"
    return wheels[0]


@pytest.fixture(scope="module")
def wheel_names(wheel_path: Path) -> list[str]:
    with zipfile.ZipFile(wheel_path) as wheel:
        return wheel.namelist()


def test_wheel_has_only_llmping_at_top(wheel_names: list[str]) -> None:
    tops = {PurePosixPath(name).parts[0] for name in wheel_names}
    unexpected = {top for top in tops if top != "llmping" and not top.endswith(".dist-info")}
    assert unexpected == set(), f"top-level entries besides llmping/: {sorted(unexpected)}"


@pytest.mark.parametrize("generic_name", ["agent", "controller", "cli", "proto", "simulator"])
def test_wheel_has_no_generic_module(wheel_names: list[str], generic_name: str) -> None:
    offending = [
        name
        for name in wheel_names
        if name.startswith(f"{generic_name}/") or name == f"{generic_name}.py"
    ]
    assert offending == []


def test_wheel_contains_every_source_module(wheel_names: list[str]) -> None:
    contained = set(wheel_names)
    missing: list[str] = []
    for folder in source_package_folders():
        package = package_name_of(folder)
        assert package is not None
        for module in sorted(folder.glob("*.py")) + sorted(folder.glob("*.pyi")):
            installed = package.replace(".", "/") + "/" + module.name
            if installed not in contained:
                missing.append(f"{module.relative_to(ROOT)} (expected at {installed})")
    assert missing == [], "modules left out of the wheel:\n" + "\n".join(missing)


def test_wheel_declares_console_script(wheel_names: list[str], wheel_path: Path) -> None:
    entry_points_name = next(n for n in wheel_names if n.endswith(".dist-info/entry_points.txt"))
    with zipfile.ZipFile(wheel_path) as wheel:
        text = wheel.read(entry_points_name).decode("utf-8")
    parser = configparser.ConfigParser()
    parser.read_string(text)
    assert parser.has_option("console_scripts", "llmping")
    assert parser.get("console_scripts", "llmping").strip() == "llmping.cli.main:main"


def test_wheel_keeps_typing_marker(wheel_names: list[str]) -> None:
    assert "llmping/py.typed" in wheel_names


def test_every_source_package_is_listed() -> None:
    listed = listed_packages()
    unlisted: list[str] = []
    for folder in source_package_folders():
        package = package_name_of(folder)
        if package not in listed:
            unlisted.append(f"{folder.relative_to(ROOT)} -> {package}")
    assert unlisted == [], (
        "folders with an __init__.py missing from [tool.setuptools] packages in "
        "pyproject.toml (add each package name there):\n" + "\n".join(unlisted)
    )


def test_every_listed_package_has_a_folder() -> None:
    found = {package_name_of(folder) for folder in source_package_folders()}
    stale = sorted(listed_packages() - found)
    assert stale == [], f"packages listed in pyproject.toml with no __init__.py: {stale}"


@pytest.mark.parametrize(
    "package",
    [
        "llmping",
        "llmping.v1",
        "llmping.agent",
        "llmping.controller",
        "llmping.cli",
        "llmping.simulator",
    ],
)
def test_role_package_is_mapped(package: str) -> None:
    assert package in package_dirs()
