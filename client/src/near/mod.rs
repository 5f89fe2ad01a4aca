//! The NEAR side: the signer contract's key views and its `sign` method, through the
//! same contract client the MPC nodes use ([`mpc_node::chain::Chain`]).

pub mod credentials;

use crate::config::NearSettings;
use crate::error::{Error, Result};
use crate::progress::Progress;
use mpc_node::chain::{Chain, ChainError};
use near_crypto::{KeyType, SecretKey};
use near_primitives::types::AccountId;
use primitives::{DomainId, Payload, SignRequestArgs, SignatureResponse};

/// What client libraries written for the deployed signer attach to `sign`: the
/// deposit forces a full-access key, the gas buys the longest wait.
pub const SIGN_TGAS: u64 = 300;
pub const SIGN_DEPOSIT_YOCTO: u128 = 1;

/// A client of one signer contract, acting as one NEAR account.
pub struct Near {
    chain: Chain,
    contract: AccountId,
}

impl Near {
    /// Signs as `account` with `key`.
    pub fn connect(rpc: &str, contract: AccountId, account: AccountId, key: SecretKey) -> Near {
        Near {
            chain: Chain::new(rpc, contract.clone(), account, key),
            contract,
        }
    }

    /// Views only. The contract client wants an account and a key, which views never
    /// use, so a throwaway key stands in.
    pub fn read_only(rpc: &str, contract: AccountId) -> Near {
        let key = SecretKey::from_random(KeyType::ED25519);
        Near::connect(rpc, contract.clone(), contract, key)
    }

    /// Signs as the settings' account with the key found for it.
    pub fn from_settings(settings: &NearSettings) -> Result<Near> {
        let account = settings.signer()?.clone();
        let key = credentials::load_secret_key(
            &account,
            &settings.network,
            settings.near_key.as_deref(),
            &settings.credentials_dir,
        )?;
        Ok(Near::connect(
            &settings.rpc,
            settings.contract.clone(),
            account,
            key,
        ))
    }

    /// The account that calls `sign`: the predecessor whose keys it gets.
    pub fn account(&self) -> AccountId {
        self.chain.account()
    }

    /// Refuses to ask for a signature with `predecessor`'s key unless this client
    /// signs as `predecessor` (the contract would sign with another key).
    pub fn check_signer(&self, predecessor: &AccountId) -> Result<()> {
        if self.account() == *predecessor {
            return Ok(());
        }
        Err(Error::invalid(
            "signer",
            format!("{} cannot sign with {predecessor}'s keys", self.account()),
        ))
    }

    /// The root public key of `domain` as the contract writes it
    /// (`secp256k1:…` or `ed25519:…`).
    pub async fn root_key(&self, domain: DomainId) -> Result<String> {
        self.chain
            .view("public_key", serde_json::json!({ "domain_id": domain }))
            .await
            .map_err(from_chain)
    }

    /// The contract's `derived_public_key` for `predecessor` and `path` in `domain`.
    pub async fn derived_key_text(
        &self,
        predecessor: &AccountId,
        path: &str,
        domain: DomainId,
    ) -> Result<String> {
        let args = serde_json::json!({
            "path": path,
            "predecessor": predecessor,
            "domain_id": domain,
        });
        self.chain
            .view("derived_public_key", args)
            .await
            .map_err(from_chain)
    }

    /// Calls `sign` with the current argument shape (`payload_v2`, `domain_id`) and
    /// waits for the network's answer. The answer is not verified here; the
    /// scheme's module does that against the derived key.
    pub async fn sign(
        &self,
        payload: Payload,
        path: &str,
        domain: DomainId,
        progress: &Progress,
    ) -> Result<SignatureResponse> {
        progress.step(format_args!(
            "asking {} to sign {} for {} (path {path:?}, domain {})",
            self.contract,
            hex::encode(payload.as_bytes()),
            self.account(),
            domain.0
        ));
        let request = SignRequestArgs {
            payload_v2: Some(payload),
            path: path.to_string(),
            domain_id: Some(domain),
            ..Default::default()
        };
        let answer = self
            .chain
            .call(
                "sign",
                serde_json::json!({ "request": request }),
                SIGN_TGAS,
                SIGN_DEPOSIT_YOCTO,
            )
            .await
            .map_err(from_chain)?;
        serde_json::from_slice(&answer)
            .map_err(|e| Error::BadAnswer(format!("{e}: {}", String::from_utf8_lossy(&answer))))
    }
}

/// Sorts the contract client's errors into the user's categories. The contract's
/// timeout text is fixed (contract/src/sign.rs): "signature request … timed out".
fn from_chain(error: ChainError) -> Error {
    match error {
        ChainError::Rpc(text) => Error::NearRpc(text),
        ChainError::Decode(text) => Error::BadAnswer(text),
        ChainError::Failed(text)
            if text.contains("signature request") && text.contains("timed out") =>
        {
            Error::SignTimedOut(text)
        }
        ChainError::Failed(text) => Error::SignRefused(text),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_contracts_timeout_is_told_apart_from_other_failures() {
        let timeout = ChainError::Failed(
            "Smart contract panicked: signature request 3f… timed out: the MPC network did not answer in time."
                .into(),
        );
        assert!(matches!(from_chain(timeout), Error::SignTimedOut(_)));
        let refused =
            ChainError::Failed("Smart contract panicked: payload must not be zero".into());
        assert!(matches!(from_chain(refused), Error::SignRefused(_)));
        assert!(matches!(
            from_chain(ChainError::Rpc("connection refused".into())),
            Error::NearRpc(_)
        ));
    }
}
