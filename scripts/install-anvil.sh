#!/usr/bin/env bash
# Installs anvil, a real Ethereum node (Foundry's), from the npm registry into
# target/tools, pinned; prints the binary's path. The package ships the binary, so
# nothing is downloaded from anywhere but the registry. Quiet and quick when the
# pinned version is already there.
#
#   scripts/install-anvil.sh            # prints .../bin/anvil
#
# The Ethereum tests (integration-tests/tests/ethereum.rs) run this themselves.
set -euo pipefail

version=1.7.1
package=@foundry-rs/anvil-linux-amd64

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
prefix="$root/target/tools"
binary="$prefix/node_modules/$package/bin/anvil"

if [ "$(uname -sm)" != "Linux x86_64" ]; then
    echo "install-anvil.sh: $package is built for Linux x86_64, this is $(uname -sm)" >&2
    exit 1
fi

installed() {
    [ -x "$binary" ] && "$binary" --version 2>/dev/null | grep -q "Version: $version"
}

if ! installed; then
    command -v npm >/dev/null || {
        echo "install-anvil.sh: npm is needed to install anvil (apt-get install npm)" >&2
        exit 1
    }
    mkdir -p "$prefix"
    # A lock protects concurrent test processes installing at once.
    exec 9>"$prefix/.anvil.lock"
    flock 9
    if ! installed; then
        npm install --prefix "$prefix" --save-exact --no-audit --no-fund --loglevel=error \
            "$package@$version" >&2
    fi
    installed || { echo "install-anvil.sh: $binary is not anvil $version" >&2; exit 1; }
fi
echo "$binary"
