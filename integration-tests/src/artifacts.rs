//! What the tests, the demo and the benchmarks run: this workspace's binaries
//! (built first when run under cargo, so never stale), the contract wasm, and
//! pinned tools from the npm registry.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The binaries the tests and the demo run. They are built together, in one cargo
/// invocation, so their dependencies are compiled once with one feature set.
const BINARIES: [&str; 2] = ["mpc-node", "chainsig"];

/// The `mpc-node` binary (see [`workspace_binary`]).
pub fn mpc_node_binary() -> Result<PathBuf, String> {
    workspace_binary("mpc-node")
}

/// A binary of this workspace next to the running executable (`target/debug` or
/// `target/release`), built first (all of [`BINARIES`] at once) when run under
/// cargo, so it is never stale.
pub fn workspace_binary(name: &str) -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let dir = exe.parent().ok_or("no executable directory")?;
    // Test executables live in target/debug/deps, examples in target/debug/examples,
    // binaries in target/debug.
    let dir = if dir.ends_with("deps") || dir.ends_with("examples") {
        dir.parent().ok_or("no target directory")?
    } else {
        dir
    };
    if let Ok(cargo) = std::env::var("CARGO") {
        static BUILT: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
        BUILT
            .get_or_init(|| build_binaries(&cargo, dir.ends_with("release"), None))
            .clone()?;
    }
    let binary = dir.join(name);
    if !binary.exists() {
        return Err(format!(
            "{} not found: build it with `cargo build -p {name}` (make demo builds mpc-node)",
            binary.display()
        ));
    }
    Ok(binary)
}

/// `mpc-node` built with its test-only `misbehave` feature, as
/// `target/<profile>/mpc-node-misbehave`. Under cargo it is built first (the
/// feature changes no dependency, so only mpc-node is compiled again), then the
/// plain binary is put back in place for every other test (cargo only relinks it),
/// so no default build ever contains the misbehaviour.
pub fn misbehaving_node_binary() -> Result<PathBuf, String> {
    let plain = mpc_node_binary()?;
    let dir = plain.parent().ok_or("no target directory")?.to_path_buf();
    let target = dir.join("mpc-node-misbehave");
    if let Ok(cargo) = std::env::var("CARGO") {
        static BUILT: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
        BUILT
            .get_or_init(|| {
                // All of BINARIES, as `workspace_binary` builds them: the same
                // packages give the dependencies the same features (nothing but
                // mpc-node is compiled again).
                let release = dir.ends_with("release");
                build_binaries(&cargo, release, Some("mpc-node/misbehave"))?;
                std::fs::copy(&plain, &target)
                    .map_err(|e| format!("copying to {}: {e}", target.display()))?;
                build_binaries(&cargo, release, None)
            })
            .clone()?;
    }
    if !target.exists() {
        return Err(format!(
            "{} not found: build it with `cargo build -p mpc-node --features misbehave` \
             and copy target/debug/mpc-node there",
            target.display()
        ));
    }
    Ok(target)
}

/// Builds all of [`BINARIES`] in one cargo invocation (with `features`, if given).
fn build_binaries(cargo: &str, release: bool, features: Option<&str>) -> Result<(), String> {
    let mut build = Command::new(cargo);
    build.args(["build", "--quiet", "--locked"]);
    for package in BINARIES {
        build.args(["-p", package]);
    }
    if let Some(features) = features {
        build.args(["--features", features]);
    }
    if release {
        build.arg("--release");
    }
    let status = build
        .current_dir(workspace_root())
        .status()
        .map_err(|e| format!("cargo build {BINARIES:?}: {e}"))?;
    status
        .success()
        .then_some(())
        .ok_or_else(|| format!("cargo build {BINARIES:?} failed"))
}

/// The repository's root folder.
pub(crate) fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Runs an idempotent install script of `scripts/` (pinned tools from the npm
/// registry into `target/tools`) and returns the path it prints.
pub(crate) fn install_tool(script: &str) -> Result<PathBuf, String> {
    let script = workspace_root().join("scripts").join(script);
    let output = Command::new(&script)
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("{}: {e}", script.display()))?;
    if !output.status.success() {
        return Err(format!("{} failed", script.display()));
    }
    let path = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
    path.exists().then_some(path.clone()).ok_or_else(|| {
        format!(
            "{} printed {}, which does not exist",
            script.display(),
            path.display()
        )
    })
}

/// The contract wasm, built by scripts/build-contract.sh (`make contract`).
pub fn multichain_wasm() -> Result<Vec<u8>, String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/near/multichain.wasm");
    std::fs::read(&path).map_err(|e| format!("{}: {e} (run `make contract`)", path.display()))
}
