#!/usr/bin/env bash
# The test command: install what the tests need, then run pytest.
#
#   bash scripts/test.sh                  # whole suite
#   bash scripts/test.sh tests/e2e -x     # arguments go to pytest
#
# It installs into the active virtualenv, or into .venv in the clone when none is active:
# llmping itself, editable, with the dev extra, and the third-party servers the tests
# start, each in its own virtualenv under ${LLMPING_TOOLS_DIR:-.tools}: the LiteLLM
# proxy (scripts/install-litellm.sh) and Arize Phoenix (scripts/install-phoenix.sh).
# The three installs run at the same time. Set LLMPING_SKIP_INSTALL=1 to skip them.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "${repo_root}"
# Outside a virtualenv, use (and create) .venv in the clone: the README's install line
# makes the same one, and a system Python may refuse pip installs (PEP 668).
if [[ -n "${PYTHON:-}" ]]; then
    python_bin="${PYTHON}"
elif [[ -n "${VIRTUAL_ENV:-}" ]]; then
    python_bin=python
else
    [[ -x .venv/bin/python ]] || python3 -m venv .venv
    python_bin="${repo_root}/.venv/bin/python"
fi

# Run one install step in the background with its output in a log file; the log is
# printed only when the step fails.
declare -A install_pids=()
declare -A install_logs=()
start_install() {
    local name="$1"
    shift
    local log
    log="$(mktemp -t "llmping-install-${name}.XXXXXX")"
    install_logs["${name}"]="${log}"
    "$@" >"${log}" 2>&1 &
    install_pids["${name}"]=$!
}

wait_installs() {
    local failed=0 name
    for name in "${!install_pids[@]}"; do
        if wait "${install_pids[${name}]}"; then
            echo "install ${name}: ok"
        else
            echo "error: install step ${name} failed, its output follows"
            cat "${install_logs[${name}]}"
            failed=1
        fi
        rm -f "${install_logs[${name}]}"
    done
    return "${failed}"
}

if [[ "${LLMPING_SKIP_INSTALL:-0}" != "1" ]]; then
    start_install llmping "${python_bin}" -m pip install --quiet -e '.[dev]'
    start_install litellm bash scripts/install-litellm.sh
    # scripts/install-phoenix.sh installs the OTLP backend of the tracing tests.
    if [[ -f scripts/install-phoenix.sh ]]; then
        start_install phoenix bash scripts/install-phoenix.sh
    fi
    wait_installs
fi

# pytest exits 5 when it collected no tests. This suite always has tests, so 5 here
# means the arguments selected none (a -k or path that matches nothing). That is
# reported but not treated as a failure, so that `scripts/test.sh -k NAME` behaves
# like a filter. The summary line of pytest still shows that nothing ran.
set +e
"${python_bin}" -m pytest "$@"
status=$?
set -e
if ((status == 5)); then
    echo "note: pytest selected no tests with the arguments: $*"
    exit 0
fi
exit "${status}"
