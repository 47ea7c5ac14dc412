#!/usr/bin/env bash
# The whole validation chain of FiberLB, as CI runs it: formatting, lints, build, every
# unit and integration test. Idempotent; needs only the Rust toolchain (plus root for the
# apt packages later suites install when missing). Bounded in time: no step may hang.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

# Installs a Debian package when the command it provides is missing (idempotent).
# Integration tests use real servers: dnsmasq is the real DNS server behind a UDP listener.
apt_updated=0
ensure() {
  local cmd=$1 pkg=$2
  command -v "$cmd" >/dev/null 2>&1 && return 0
  if [ "$(id -u)" != 0 ]; then
    echo "missing $cmd: run as root or install $pkg" >&2
    exit 1
  fi
  if [ $apt_updated = 0 ]; then
    timeout 600 apt-get update -qq
    apt_updated=1
  fi
  DEBIAN_FRONTEND=noninteractive timeout 900 apt-get install -y -qq --no-install-recommends "$pkg"
}

step "test dependencies"
ensure dnsmasq dnsmasq-base
ensure etcd etcd-server
ensure nix-instantiate nix-bin
ensure bird bird2
# The anycast test (tests/anycast.rs) also peers with GoBGP, the second router implementation.
ensure gobgpd gobgpd
# `promtool check metrics` validates /metrics (tests/promtool.rs).
ensure promtool prometheus
# Headless Chromium drives the status page (tests/browser.rs).
ensure chromium chromium
# The BIRD interop and anycast tests must run here, not skip.
export FIBERLB_REQUIRE_BIRD=1

# A one-shot build gains nothing from incremental state, which alone took 2.8 GB of disk.
export CARGO_INCREMENTAL=0

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (all targets, warnings are errors)"
timeout 1200 cargo clippy --workspace --all-targets --locked -- -D warnings

step "cargo build (the fiberlb binary the integration tests start)"
timeout 1200 cargo build --workspace --locked

step "NixOS module: every file parses, example hosts render to a valid config"
timeout 300 bash scripts/check-nix.sh

step "cargo test"
timeout 1500 cargo test --workspace --locked -- --test-threads 4
