//! Solana for the tests of `chainsig sol send`: a JSON-RPC endpoint on LiteSVM (a
//! real Solana runtime, installed pinned from the npm registry by
//! `scripts/install-litesvm.sh` and served by `scripts/solana-rpc.mjs`), and a local
//! stand-in for the network's Ed25519 signing (a root secret the test knows, with
//! the tweak added exactly as the nodes add it to their shares).
//!
//! ```no_run
//! # async fn example() -> Result<(), String> {
//! use integration_tests::solana::{LocalEd25519Root, SolanaRpc};
//! let solana = SolanaRpc::start().await?;
//! let signer = LocalEd25519Root::random().signer("alice.test.near", "solana-1");
//! solana.fund(&signer.address(), 1_000_000_000).await?;
//! assert_eq!(solana.balance(&signer.address()).await?, 1_000_000_000);
//! # Ok(())
//! # }
//! ```

use chainsig::solana::{MessageSigner, Pubkey, SolRpc};
use chainsig::Progress;
use curve25519_dalek::edwards::EdwardsPoint;
use curve25519_dalek::Scalar;
use ed25519_dalek::hazmat::{raw_sign, ExpandedSecretKey};
use ed25519_dalek::VerifyingKey;
use primitives::ed25519::{Ed25519PublicKey, Ed25519Tweak};
use primitives::{Ed25519Signature, EddsaPayload};
use rand::RngCore;
use sha3::Digest;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The folder whose node_modules holds the pinned LiteSVM, installed on first use
/// (`scripts/install-litesvm.sh`, idempotent).
pub fn litesvm_prefix() -> Result<PathBuf, String> {
    static INSTALLED: std::sync::OnceLock<Result<PathBuf, String>> = std::sync::OnceLock::new();
    INSTALLED
        .get_or_init(|| crate::install_tool("install-litesvm.sh"))
        .clone()
}

/// `scripts/solana-rpc.mjs` on a free loopback port, over a fresh LiteSVM; killed
/// on drop.
pub struct SolanaRpc {
    child: Child,
    pub url: String,
    pub rpc: SolRpc,
}

/// How long the endpoint may take to start (Node.js loading LiteSVM's native
/// module: well under a second here).
const START_LIMIT: Duration = Duration::from_secs(30);

impl SolanaRpc {
    /// Installs LiteSVM if needed, starts the endpoint and waits until it answers.
    pub async fn start() -> Result<SolanaRpc, String> {
        let prefix = tokio::task::spawn_blocking(litesvm_prefix)
            .await
            .map_err(|e| e.to_string())??;
        let script = crate::workspace_root().join("scripts/solana-rpc.mjs");
        let mut child = Command::new("node")
            .arg(&script)
            .args(["--port", "0"])
            .env("LITESVM_PREFIX", &prefix)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("starting node {}: {e}", script.display()))?;
        // The endpoint prints its address as its one line on stdout.
        let stdout = child.stdout.take().expect("piped");
        let first_line = tokio::task::spawn_blocking(move || {
            let mut line = String::new();
            BufReader::new(stdout).read_line(&mut line).map(|_| line)
        });
        let line = match tokio::time::timeout(START_LIMIT, first_line).await {
            Ok(Ok(Ok(line))) => line,
            outcome => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "{} did not start within {START_LIMIT:?}: {outcome:?}",
                    script.display()
                ));
            }
        };
        let Some(url) = line.trim().strip_prefix("listening on ") else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("{} printed {line:?}", script.display()));
        };
        let url = url.to_string();
        let solana = SolanaRpc {
            child,
            rpc: SolRpc::new(&url),
            url,
        };
        solana
            .rpc
            .latest_blockhash()
            .await
            .map_err(|e| format!("the endpoint does not answer: {e}"))?;
        Ok(solana)
    }

    /// Gives `address` `lamports` (an airdrop, committed at once).
    pub async fn fund(&self, address: &Pubkey, lamports: u64) -> Result<(), String> {
        let signature = self
            .rpc
            .request_airdrop(address, lamports)
            .await
            .map_err(|e| e.to_string())?;
        let status = self
            .rpc
            .wait_for_confirmation(&signature, Duration::from_secs(10))
            .await
            .map_err(|e| e.to_string())?;
        match status.err {
            None => Ok(()),
            Some(err) => Err(format!("the airdrop failed: {err}")),
        }
    }

    pub async fn balance(&self, address: &Pubkey) -> Result<u64, String> {
        self.rpc.balance(address).await.map_err(|e| e.to_string())
    }
}

impl Drop for SolanaRpc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A root Ed25519 secret scalar known to the test: what the nodes hold only in
/// shares. Its public key is the root key a contract's domain 1 would have.
pub struct LocalEd25519Root {
    secret: Scalar,
}

impl LocalEd25519Root {
    pub fn random() -> LocalEd25519Root {
        let mut wide = [0u8; 64];
        rand::thread_rng().fill_bytes(&mut wide);
        LocalEd25519Root {
            secret: Scalar::from_bytes_mod_order_wide(&wide),
        }
    }

    /// s·B.
    pub fn public_key(&self) -> Ed25519PublicKey {
        Ed25519PublicKey::from_point(EdwardsPoint::mul_base(&self.secret))
    }

    /// The signer for `predecessor` and `path`: the secret s + ε, with ε computed
    /// here from the tweak's definition (SHA3-256 of the prefix, the account, a
    /// comma and the path, read little-endian mod ℓ), not taken from primitives.
    /// Panics if its key is not primitives' derivation of the root key: the two
    /// must agree for the contract and the nodes to sign for the address shown.
    pub fn signer(&self, predecessor: &str, path: &str) -> LocalEd25519Signer {
        let preimage = format!("near-mpc-recovery v0.1.0 epsilon derivation:{predecessor},{path}");
        let hash: [u8; 32] = sha3::Sha3_256::digest(preimage.as_bytes()).into();
        let epsilon = Scalar::from_bytes_mod_order(hash);
        assert_eq!(
            &epsilon,
            Ed25519Tweak::derive(predecessor, path).as_scalar(),
            "the tweak differs from primitives'"
        );
        let secret = self.secret + epsilon;
        let key = Ed25519PublicKey::from_point(EdwardsPoint::mul_base(&secret));
        assert_eq!(
            key,
            self.public_key().derive_for(predecessor, path),
            "(s + ε)·B differs from primitives' s·B + ε·B"
        );
        let mut hash_prefix = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut hash_prefix);
        LocalEd25519Signer {
            secret: ExpandedSecretKey {
                scalar: secret,
                hash_prefix,
            },
            key,
        }
    }
}

/// Signs as the network would for one derived key: RFC 8032 signing with the
/// derived secret scalar (there is no 32-byte seed behind a derived key, so the
/// nonce prefix is random, as a threshold signer's nonces are).
pub struct LocalEd25519Signer {
    secret: ExpandedSecretKey,
    key: Ed25519PublicKey,
}

impl LocalEd25519Signer {
    pub fn address(&self) -> Pubkey {
        chainsig::solana::address(&self.key)
    }

    pub fn sign_bytes(&self, message: &[u8]) -> Ed25519Signature {
        let verifying =
            VerifyingKey::from_bytes(self.key.as_bytes()).expect("a derived key is a valid point");
        Ed25519Signature(raw_sign::<sha2::Sha512>(&self.secret, message, &verifying).to_bytes())
    }
}

impl MessageSigner for LocalEd25519Signer {
    fn key(&self) -> &Ed25519PublicKey {
        &self.key
    }

    async fn sign(
        &self,
        message: &EddsaPayload,
        progress: &Progress,
    ) -> chainsig::Result<Ed25519Signature> {
        progress.step("signing locally with the derived secret (test stand-in for the network)");
        Ok(self.sign_bytes(message.as_bytes()))
    }
}
