#!/usr/bin/env bash
# The whole validation chain of FiberLB, as CI runs it: formatting, lints, build, every
# unit and integration test. Idempotent; needs only the Rust toolchain (plus root for the
# apt packages later suites install when missing). Bounded in time: no step may hang.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (all targets, warnings are errors)"
timeout 1200 cargo clippy --workspace --all-targets --locked -- -D warnings

step "cargo build (the fiberlb binary the integration tests start)"
timeout 1200 cargo build --workspace --locked

step "cargo test"
timeout 1500 cargo test --workspace --locked -- --test-threads 4
