#!/usr/bin/env bash
# Install the LiteLLM proxy that the end-to-end tests start as a real third-party
# OpenAI-compatible gateway (tests/e2e/conftest.py).
#
# It goes into its own virtualenv because litellm[proxy] pins dozens of packages
# (fastapi, pydantic, openai, ...) that must not change what llmping itself is tested
# against. Running the script again with the pinned version installed does nothing.
#
#   bash scripts/install-litellm.sh             # installs into <repo>/.tools/litellm
#   LLMPING_TOOLS_DIR=/opt/tools bash scripts/install-litellm.sh
set -euo pipefail

# 1.110.2 is newer, but its [proxy] extra requires litellm-proxy, litellm-proxy-extras
# and litellm-enterprise releases that the package index used here does not serve;
# 1.108.7 is the newest release whose [proxy] extra installs from it.
LITELLM_VERSION="1.108.7"

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tools_dir="${LLMPING_TOOLS_DIR:-${repo_root}/.tools}"
venv_dir="${tools_dir}/litellm"
stamp="${venv_dir}/.llmping-installed-${LITELLM_VERSION}"
# The interpreter that creates the virtualenv; LiteLLM needs Python 3.10 or newer.
python_bin="${LITELLM_PYTHON:-python3}"

mkdir -p "${tools_dir}"
# Two installs at once (CI and a developer's test run, say) would delete each
# other's virtualenv, so the second one waits for the first.
exec 9>"${tools_dir}/litellm.lock"
flock 9

if [[ -f "${stamp}" && -x "${venv_dir}/bin/litellm" ]]; then
    echo "litellm ${LITELLM_VERSION} already installed in ${venv_dir}"
    exit 0
fi

echo "installing litellm[proxy]==${LITELLM_VERSION} into ${venv_dir}"
rm -rf "${venv_dir}"
"${python_bin}" -m venv "${venv_dir}"
"${venv_dir}/bin/python" -m pip install --quiet --upgrade pip
"${venv_dir}/bin/python" -m pip install --quiet "litellm[proxy]==${LITELLM_VERSION}"

# The stamp is written last, so an interrupted install is redone by the next call.
touch "${stamp}"
echo "litellm ${LITELLM_VERSION} installed: ${venv_dir}/bin/litellm"
