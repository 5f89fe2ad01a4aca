//! The Esplora HTTP API (as served by electrs and public block explorers): an address's
//! outputs, fee estimates, and broadcasting a transaction.

use super::spend::{checked_sats, Utxo};
use crate::error::{Error, Result};
use ::bitcoin::consensus::encode::serialize_hex;
use ::bitcoin::{Address, FeeRate, OutPoint, Transaction, Txid};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use std::collections::HashMap;
use std::str::FromStr;
use std::time::Duration;

const CHAIN: &str = "Bitcoin";
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// A client of one Esplora server, by its base URL (`…/api`).
pub struct Esplora {
    http: reqwest::Client,
    base: String,
}

#[derive(Deserialize)]
struct EsploraUtxo {
    txid: String,
    vout: u32,
    value: u64,
}

impl Esplora {
    pub fn new(base: &str) -> Esplora {
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .build()
            .expect("a reqwest client with a timeout");
        Esplora {
            http,
            base: base.trim_end_matches('/').to_string(),
        }
    }

    /// The address's unspent outputs, confirmed or not.
    pub async fn utxos(&self, address: &Address) -> Result<Vec<Utxo>> {
        let what = format!("GET /address/{address}/utxo");
        let listed: Vec<EsploraUtxo> = self.get(&format!("address/{address}/utxo"), &what).await?;
        listed
            .into_iter()
            .map(|u| {
                let txid = Txid::from_str(&u.txid).map_err(|e| error(&what, e))?;
                Ok(Utxo {
                    outpoint: OutPoint { txid, vout: u.vout },
                    amount: checked_sats(u.value).map_err(|e| error(&what, e))?,
                })
            })
            .collect()
    }

    /// The server's fee rate for confirmation within `target` blocks (rounded up
    /// to whole satoshis per vbyte, at least 1).
    pub async fn fee_rate(&self, target: u16) -> Result<FeeRate> {
        let what = "GET /fee-estimates";
        let estimates: HashMap<String, f64> = self.get("fee-estimates", what).await?;
        let rate = estimates.get(&target.to_string()).ok_or_else(|| {
            error(
                what,
                format!("no estimate for {target} blocks; give --fee-rate"),
            )
        })?;
        let sat_vb = rate.ceil().max(1.0) as u64;
        FeeRate::from_sat_per_vb(sat_vb)
            .ok_or_else(|| error(what, format!("{rate} sat/vB is absurd")))
    }

    /// Broadcasts `tx`; the server's refusal (Bitcoin Core's reason) is
    /// [`Error::BroadcastRejected`].
    pub async fn broadcast(&self, tx: &Transaction) -> Result<Txid> {
        let what = "POST /tx";
        let request = self
            .http
            .post(format!("{}/tx", self.base))
            .body(serialize_hex(tx));
        let (status, body) = self.exchange(request, what).await?;
        if !status.is_success() {
            return Err(Error::BroadcastRejected {
                chain: CHAIN,
                reason: format!("HTTP {status}: {body}"),
            });
        }
        Txid::from_str(&body).map_err(|e| error(what, format!("`{body}`: {e}")))
    }

    async fn get<T: DeserializeOwned>(&self, path: &str, what: &str) -> Result<T> {
        let request = self.http.get(format!("{}/{path}", self.base));
        let (status, body) = self.exchange(request, what).await?;
        if !status.is_success() {
            return Err(error(what, format!("HTTP {status}: {body}")));
        }
        serde_json::from_str(&body).map_err(|e| error(what, format!("unexpected answer: {e}")))
    }

    /// Sends `request`; the status and the trimmed body.
    async fn exchange(
        &self,
        request: reqwest::RequestBuilder,
        what: &str,
    ) -> Result<(reqwest::StatusCode, String)> {
        let response = request
            .send()
            .await
            .map_err(|e| error(what, format!("{} unreachable: {e}", self.base)))?;
        let status = response.status();
        let body = response.text().await.map_err(|e| error(what, e))?;
        Ok((status, body.trim().to_string()))
    }
}

fn error(method: &str, reason: impl ToString) -> Error {
    Error::ForeignRpc {
        chain: CHAIN,
        method: method.to_string(),
        reason: reason.to_string(),
    }
}
