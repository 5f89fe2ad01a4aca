#!/usr/bin/env bash
# Installs LiteSVM, a real Solana runtime (the Agave SVM: signature checks, fees,
# the system program), from the npm registry into target/tools/litesvm, every
# package at the version and integrity hash of scripts/litesvm/package-lock.json.
# The native runtime comes prebuilt inside the package litesvm-linux-x64-gnu, so
# nothing is compiled and nothing is downloaded from anywhere but the registry.
# Prints the folder whose node_modules holds litesvm. Quiet and quick when the
# pinned version is already there.
#
#   scripts/install-litesvm.sh          # prints .../target/tools/litesvm
#
# scripts/solana-rpc.mjs serves Solana JSON-RPC from it; the Solana tests run this
# script themselves.
set -euo pipefail

version=1.5.0

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
pinned="$root/scripts/litesvm"
prefix="$root/target/tools/litesvm"

case "$(uname -sm)" in
    "Linux x86_64" | "Linux aarch64" | "Darwin x86_64" | "Darwin arm64") ;;
    *)
        echo "install-litesvm.sh: litesvm ships no native build for $(uname -sm)" >&2
        exit 1
        ;;
esac

installed() {
    # The lockfile copy marks a finished install of exactly these pins.
    cmp -s "$pinned/package-lock.json" "$prefix/.installed-lock.json" &&
        [ "$(node -p "require('$prefix/node_modules/litesvm/package.json').version" 2>/dev/null)" = "$version" ]
}

if ! installed; then
    command -v npm >/dev/null || {
        echo "install-litesvm.sh: npm is needed to install litesvm (apt-get install npm)" >&2
        exit 1
    }
    mkdir -p "$prefix"
    # A lock protects concurrent test processes installing at once.
    exec 9>"$prefix/.install.lock"
    flock 9
    if ! installed; then
        rm -f "$prefix/.installed-lock.json"
        cp "$pinned/package.json" "$pinned/package-lock.json" "$prefix/"
        # Not `npm ci`: npm refuses it when the lockfile lacks other platforms'
        # optional native packages (npm/cli#4828); install follows the lockfile too.
        npm install --prefix "$prefix" --no-audit --no-fund --loglevel=error >&2
        cp "$pinned/package-lock.json" "$prefix/.installed-lock.json"
    fi
    installed || { echo "install-litesvm.sh: litesvm $version is not in $prefix" >&2; exit 1; }
fi
echo "$prefix"
