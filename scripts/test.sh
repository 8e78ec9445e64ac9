#!/usr/bin/env bash
# Runs every test: Rust unit and integration tests, then the end-to-end conformance suite that
# drives the real binary with boto3 and the aws CLI. Installs what it needs (a local Python
# virtual environment in .venv) so it works on a fresh machine.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n==> %s\n' "$*"; }

log "Python tools (.venv)"
if ! python3 -m venv --help >/dev/null 2>&1; then
    apt-get update -qq && apt-get install -y -qq python3-venv
fi
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install -q --disable-pip-version-check -r tests/requirements.txt

log "Build (one debug build shared by every stage)"
cargo build --locked --workspace --all-targets

log "Rust tests"
cargo test --locked --workspace

log "Conformance suite (boto3 and aws CLI against the running binary)"
export OTATRAIL_BIN="$PWD/target/debug/otatrail"
# Three files at a time (each file keeps its own servers): most tests wait on delivery and
# digest timers, not on the CPU.
XDIST=(-n 3 --dist loadfile)
.venv/bin/python -m pytest tests/conformance -q -p no:cacheprovider "${XDIST[@]}"

log "Conformance suite again, object bytes in an external S3 store (moto_server on loopback)"
OTATRAIL_TEST_EXTERNAL_S3=1 .venv/bin/python -m pytest -q -p no:cacheprovider "${XDIST[@]}" \
    tests/conformance/test_s3.py tests/conformance/test_s3_config.py tests/conformance/test_streams_crud.py

log "Benchmark smoke run (1-second runs on the debug build: checks the benchmark works; no figure is judged)"
.venv/bin/python bench/controlplane.py --smoke
