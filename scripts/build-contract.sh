#!/usr/bin/env bash
# Builds NEAR contract packages of this workspace to wasm and copies each to
# target/near/<package>.wasm (hyphens become underscores, as cargo names artifacts).
#
#   scripts/build-contract.sh                 # the `multichain` contract
#   scripts/build-contract.sh pkg-a pkg-b     # other contract packages, by name
#
# Two routes, chosen here and nowhere else:
#   rustup  a toolchain whose sysroot has the wasm32-unknown-unknown target
#           (most developers' machines: `rustup target add wasm32-unknown-unknown`);
#   debian  Debian's rustc-web, cargo-web and rust-web-src, which build std for wasm
#           from source (our CI machines, which cannot download rustup targets).
#           Installed with apt-get when missing and we may do so.
# Set CONTRACT_TOOLCHAIN=rustup or CONTRACT_TOOLCHAIN=debian to force one.
#
# Both build with `-C target-cpu=mvp`: the NEAR VM rejects the multi-value and SIMD
# proposals that Rust enables by default for wasm32 since 1.82.
#
# Then, where binaryen's wasm-opt is installed (the Debian route installs it), the
# module is shrunk with `wasm-opt -Oz --mvp-features` (about a fifth smaller).
#
# Quiet when nothing changed; the build log is printed only when a build fails.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
out_dir="$root/target/near"
target_dir="$root/target/wasm"
wasm_target=wasm32-unknown-unknown
packages=("$@")
[ ${#packages[@]} -gt 0 ] || packages=(multichain)

die() { printf 'build-contract: %s\n' "$*" >&2; exit 1; }

rustup_has_wasm_target() {
    command -v rustup >/dev/null 2>&1 || return 1
    local sysroot
    sysroot=$(cd "$root" && rustc --print sysroot 2>/dev/null) || return 1
    [ -d "$sysroot/lib/rustlib/$wasm_target/lib" ]
}

# rustc links wasm with rust-lld; Debian's rust-web-llvm ships it as a link to the
# lld of its LLVM (lld-22 today), which is a package of its own. The route also
# includes binaryen's wasm-opt, so every Debian build yields the same bytes.
debian_toolchain_present() {
    [ -x /usr/bin/rustc ] && [ -x /usr/bin/cargo ] && [ -d /usr/lib/rustlib/src/rust/library ] &&
        [ -x /usr/bin/rust-lld ] && command -v wasm-opt >/dev/null 2>&1
}

apt_install() {
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq "$@"
}

install_debian_toolchain() {
    sudo=()
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null 2>&1 || die "no wasm toolchain found. Either run
  rustup target add $wasm_target
or install Debian's packages as root:
  apt-get install rustc-web cargo-web rust-web-src"
        sudo=(sudo)
    fi
    command -v apt-get >/dev/null 2>&1 || die "no wasm toolchain found and no apt-get to install one.
Run: rustup target add $wasm_target"
    echo "build-contract: installing Debian's rustc-web, cargo-web, rust-web-src, lld, binaryen (one time)" >&2
    local log
    log=$(mktemp)
    if ! { "${sudo[@]}" apt-get update -qq &&
        apt_install rustc-web cargo-web rust-web-src rust-web-llvm binaryen &&
        apt_install "$(basename "$(readlink /usr/bin/rust-lld)")"; } >"$log" 2>&1; then
        cat "$log" >&2
        die "apt-get could not install rustc-web cargo-web rust-web-src rust-web-llvm and its lld (see above).
Alternatively: rustup target add $wasm_target"
    fi
    rm -f "$log"
}

route=${CONTRACT_TOOLCHAIN:-}
if [ -z "$route" ]; then
    if rustup_has_wasm_target; then route=rustup; else route=debian; fi
fi

# `--cfg near` selects near-sdk's real host functions (cargo-near sets it too). The
# path remaps keep checkout and cargo-home paths (in panic locations) out of the
# wasm, so the same sources build the same bytes anywhere.
cargo_home=${CARGO_HOME:-$HOME/.cargo}
flags=(--cfg near -C target-cpu=mvp -C link-arg=-s
    "--remap-path-prefix=$root=/chain-signatures" "--remap-path-prefix=$cargo_home=/cargo")
# The encoded form (0x1f-separated) keeps paths with spaces intact.
encoded_flags=$(IFS=$'\x1f'; printf '%s' "${flags[*]}")
case "$route" in
rustup)
    rustup_has_wasm_target || die "CONTRACT_TOOLCHAIN=rustup, but the active toolchain has no $wasm_target target.
Run: rustup target add $wasm_target"
    build=(env CARGO_ENCODED_RUSTFLAGS="$encoded_flags" cargo build)
    ;;
debian)
    debian_toolchain_present || install_debian_toolchain
    debian_toolchain_present || die "Debian's rust-web toolchain is incomplete: /usr/bin/rustc, /usr/bin/cargo, /usr/lib/rustlib/src, /usr/bin/rust-lld and wasm-opt are needed"
    # build-std is a nightly feature; RUSTC_BOOTSTRAP lets Debian's stable compiler use it.
    # So is -Zlocation-detail=none, which leaves file names and line numbers out of
    # panic messages: 15 KB less wasm (a twentieth), which every receipt pays to load.
    # The contract's refusals are its own texts and keep them; only an internal bug's
    # panic would say less about where it happened.
    flags+=(-Zlocation-detail=none)
    encoded_flags=$(IFS=$'\x1f'; printf '%s' "${flags[*]}")
    # std's optimize_for_size picks its smaller algorithms (2 KB).
    build=(env RUSTC_BOOTSTRAP=1 CARGO_ENCODED_RUSTFLAGS="$encoded_flags" RUSTC=/usr/bin/rustc RUSTDOC=/usr/bin/rustdoc
        /usr/bin/cargo build -Zbuild-std=std,panic_abort -Zbuild-std-features=optimize_for_size)
    ;;
*) die "CONTRACT_TOOLCHAIN must be 'rustup' or 'debian', not '$route'" ;;
esac

pkg_args=()
for p in "${packages[@]}"; do pkg_args+=(-p "$p"); done

log="$target_dir/build-contract.log"
mkdir -p "$target_dir" "$out_dir"
if ! (cd "$root" && "${build[@]}" --locked --quiet --profile contract --target "$wasm_target" \
    --target-dir "$target_dir" "${pkg_args[@]}") >"$log" 2>&1; then
    cat "$log" >&2
    die "building ${packages[*]} with the $route toolchain failed (log above, also in $log)"
fi

for p in "${packages[@]}"; do
    artifact="$target_dir/$wasm_target/contract/${p//-/_}.wasm"
    [ -f "$artifact" ] || die "cargo built $p but $artifact is missing: is it a cdylib crate?"
    dest="$out_dir/${p//-/_}.wasm"
    # Redo the copy (and wasm-opt) only when cargo produced a new artifact.
    [ -f "$dest" ] && [ "$dest" -nt "$artifact" ] && continue
    note=""
    if command -v wasm-opt >/dev/null 2>&1; then
        wasm-opt -Oz --mvp-features --strip-debug --strip-producers "$artifact" -o "$dest.tmp" ||
            die "wasm-opt failed on $artifact"
        mv "$dest.tmp" "$dest"
        note=", wasm-opt -Oz"
    else
        cp "$artifact" "$dest"
    fi
    echo "build-contract: $dest ($(wc -c <"$dest") bytes, $route toolchain$note)"
done
