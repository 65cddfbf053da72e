#!/usr/bin/env bash
# Install Arize Phoenix, the OTLP backend the tracing tests export to, into its own
# virtualenv at ${LLMPING_TOOLS_DIR:-<repo>/.tools}/phoenix.
#
# Phoenix pins many packages (sqlalchemy, grpcio, opentelemetry-*), so it never goes
# into the project's own environment. Running the script again with the pinned
# version already installed does nothing.
set -euo pipefail

PHOENIX_VERSION="20.26.1"

repo_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tools_dir="${LLMPING_TOOLS_DIR:-${repo_dir}/.tools}"
venv_dir="${tools_dir}/phoenix"
python_bin="${PYTHON:-python3}"

installed_version() {
    "${venv_dir}/bin/python" - <<'PY' 2>/dev/null || true
from importlib.metadata import PackageNotFoundError, version
try:
    print(version("arize-phoenix"))
except PackageNotFoundError:
    pass
PY
}

if [[ -x "${venv_dir}/bin/phoenix" && "$(installed_version)" == "${PHOENIX_VERSION}" ]]; then
    echo "arize-phoenix ${PHOENIX_VERSION} already installed in ${venv_dir}"
    exit 0
fi

mkdir -p "${tools_dir}"
if [[ ! -x "${venv_dir}/bin/python" ]]; then
    "${python_bin}" -m venv "${venv_dir}"
fi
"${venv_dir}/bin/python" -m pip install --quiet --upgrade pip
"${venv_dir}/bin/python" -m pip install --quiet "arize-phoenix==${PHOENIX_VERSION}"
echo "installed arize-phoenix ${PHOENIX_VERSION} in ${venv_dir}"
