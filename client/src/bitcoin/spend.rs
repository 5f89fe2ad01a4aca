//! `chainsig btc send`: spend P2WPKH outputs of the derived address. Inputs are
//! chosen, the fee is priced from the predicted weight, change goes back to the
//! sender; each input's BIP-143 sighash is signed by the network and its witness
//! assembled; the transaction is optionally broadcast through Esplora.

use super::esplora::Esplora;
use super::{compressed_key, p2wpkh_address};
use crate::ecdsa::{self, EcdsaKey};
use crate::error::{Error, Result};
use crate::near::Near;
use crate::progress::Progress;
use ::bitcoin::absolute::LockTime;
use ::bitcoin::consensus::encode::serialize_hex;
use ::bitcoin::hashes::Hash;
use ::bitcoin::secp256k1;
use ::bitcoin::sighash::{EcdsaSighashType, SighashCache};
use ::bitcoin::transaction::{predict_weight, InputWeightPrediction, Version};
use ::bitcoin::{
    Address, Amount, CompressedPublicKey, FeeRate, Network, OutPoint, Script, ScriptBuf, Sequence,
    Transaction, TxIn, TxOut, Txid, Witness,
};
use primitives::EcdsaSignature;
use serde::Serialize;
use std::str::FromStr;

const CHAIN: &str = "Bitcoin";

/// An output of the sender's address to spend.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Utxo {
    pub outpoint: OutPoint,
    pub amount: Amount,
}

impl FromStr for Utxo {
    type Err = String;

    /// `txid:vout:amount-in-satoshis`.
    fn from_str(text: &str) -> Result<Utxo, String> {
        let usage = || format!("`{text}` is not TXID:VOUT:SATOSHIS");
        let mut parts = text.split(':');
        let (Some(txid), Some(vout), Some(sats), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(usage());
        };
        let txid = Txid::from_str(txid).map_err(|e| format!("{}: {e}", usage()))?;
        let vout = vout.parse().map_err(|e| format!("{}: {e}", usage()))?;
        Ok(Utxo {
            outpoint: OutPoint { txid, vout },
            amount: parse_sats(sats).map_err(|e| format!("{}: {e}", usage()))?,
        })
    }
}

/// An amount to pay to an address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Payment {
    pub address: Address,
    pub amount: Amount,
}

impl Payment {
    /// `address:amount-in-satoshis`, the address on `network`.
    pub fn parse(text: &str, network: Network) -> Result<Payment, String> {
        let usage = || format!("`{text}` is not ADDRESS:SATOSHIS");
        let (address, sats) = text.rsplit_once(':').ok_or_else(usage)?;
        let address = Address::from_str(address)
            .map_err(|e| format!("{}: {e}", usage()))?
            .require_network(network)
            .map_err(|e| format!("{}: {e}", usage()))?;
        Ok(Payment {
            address,
            amount: parse_sats(sats).map_err(|e| format!("{}: {e}", usage()))?,
        })
    }
}

fn parse_sats(text: &str) -> Result<Amount, String> {
    let sats: u64 = text.parse().map_err(|e| format!("satoshis: {e}"))?;
    checked_sats(sats)
}

/// Refuses amounts above all bitcoin, so sums of them cannot overflow.
pub(crate) fn checked_sats(sats: u64) -> Result<Amount, String> {
    let amount = Amount::from_sat(sats);
    if amount > Amount::MAX_MONEY {
        return Err(format!("{sats} satoshis is more than all bitcoin"));
    }
    Ok(amount)
}

/// Where the inputs come from.
#[derive(Clone, Debug)]
pub enum Inputs {
    /// These outputs, all spent.
    Listed(Vec<Utxo>),
    /// The address's outputs as an Esplora server lists them, as many as needed,
    /// largest first.
    Esplora(String),
}

/// What to send.
#[derive(Clone, Debug)]
pub struct BtcSend {
    pub network: Network,
    pub inputs: Inputs,
    pub payments: Vec<Payment>,
    /// `None`: ask the Esplora server (inputs from Esplora only).
    pub fee_rate: Option<FeeRate>,
    /// `None`: back to the sender's address.
    pub change: Option<Address>,
    /// An Esplora base URL to broadcast through.
    pub broadcast: Option<String>,
}

/// Whether every candidate is spent or only as many as needed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Selection {
    All,
    AsNeeded,
}

/// An unsigned transaction and what it spends.
#[derive(Clone, Debug)]
pub struct Plan {
    pub tx: Transaction,
    /// The outputs spent, in input order.
    pub spent: Vec<Utxo>,
    pub fee: Amount,
    pub change: Option<Amount>,
}

/// A signed spend.
#[derive(Clone, Debug, Serialize)]
pub struct BtcSent {
    pub from: String,
    pub txid: String,
    pub raw_transaction: String,
    /// `txid:vout` of each input.
    pub inputs: Vec<String>,
    pub input_sat: u64,
    /// `address:satoshis` of each output (the last one may be the change).
    pub outputs: Vec<String>,
    pub change_sat: Option<u64>,
    pub fee_sat: u64,
    pub vsize: usize,
    /// The txid the Esplora server answered, when broadcast.
    pub broadcast: Option<String>,
}

/// Builds the spend of `candidates` paying `payments`, change to `change_to`.
pub fn plan(
    candidates: Vec<Utxo>,
    selection: Selection,
    payments: &[Payment],
    change_to: &ScriptBuf,
    fee_rate: FeeRate,
    sender: &str,
) -> Result<Plan> {
    check_payments(payments)?;
    let paid = sum(payments.iter().map(|p| p.amount));
    let lens: Vec<usize> = payments
        .iter()
        .map(|p| p.address.script_pubkey().len())
        .collect();
    let fee_without_change = |inputs| fee(fee_rate, inputs, lens.iter().copied());
    let spent = choose(candidates, selection, |chosen: &[Utxo]| {
        sum(chosen.iter().map(|u| u.amount)) >= paid + fee_without_change(chosen.len())
    });
    let input_total = sum(spent.iter().map(|u| u.amount));
    let with_change = fee(
        fee_rate,
        spent.len(),
        lens.iter().copied().chain([change_to.len()]),
    );
    let dust = change_to.minimal_non_dust();
    let change =
        (input_total >= paid + with_change + dust).then(|| input_total - paid - with_change);
    let needed = paid + fee_without_change(spent.len());
    if change.is_none() && input_total < needed {
        return Err(Error::InsufficientFunds {
            chain: CHAIN,
            address: sender.to_string(),
            have: describe_sats(input_total),
            need: describe_sats(needed),
        });
    }
    let mut output: Vec<TxOut> = payments
        .iter()
        .map(|p| TxOut {
            value: p.amount,
            script_pubkey: p.address.script_pubkey(),
        })
        .collect();
    if let Some(value) = change {
        output.push(TxOut {
            value,
            script_pubkey: change_to.clone(),
        });
    }
    let tx = Transaction {
        version: Version::TWO,
        lock_time: LockTime::ZERO,
        input: spent.iter().map(unsigned_input).collect(),
        output,
    };
    // Without change, whatever the outputs leave over is the fee.
    let fee = input_total - paid - change.unwrap_or(Amount::ZERO);
    Ok(Plan {
        tx,
        spent,
        fee,
        change,
    })
}

fn check_payments(payments: &[Payment]) -> Result<()> {
    if payments.is_empty() {
        return Err(Error::invalid(
            "outputs",
            "nothing to pay: give --to ADDRESS:SATOSHIS",
        ));
    }
    for payment in payments {
        let dust = payment.address.script_pubkey().minimal_non_dust();
        if payment.amount < dust {
            return Err(Error::invalid(
                "outputs",
                format!(
                    "{} to {} is below the dust limit of {}",
                    payment.amount, payment.address, dust
                ),
            ));
        }
    }
    Ok(())
}

/// Candidates in order (largest first when choosing as needed) until `enough`.
fn choose(
    mut candidates: Vec<Utxo>,
    selection: Selection,
    enough: impl Fn(&[Utxo]) -> bool,
) -> Vec<Utxo> {
    if selection == Selection::All {
        return candidates;
    }
    candidates.sort_by_key(|u| std::cmp::Reverse(u.amount));
    let mut chosen = Vec::new();
    for utxo in candidates {
        chosen.push(utxo);
        if enough(&chosen) {
            break;
        }
    }
    chosen
}

/// The fee of a transaction with `inputs` P2WPKH inputs and outputs of these
/// script lengths, at the largest signature size (so the rate is never undershot).
fn fee(rate: FeeRate, inputs: usize, output_script_lens: impl Iterator<Item = usize>) -> Amount {
    let weight = predict_weight(
        std::iter::repeat_n(InputWeightPrediction::P2WPKH_MAX, inputs),
        output_script_lens,
    );
    // Nodes measure the rate per virtual byte, rounded up: price those.
    rate.fee_vb(weight.to_vbytes_ceil())
        .unwrap_or(Amount::MAX_MONEY)
}

/// The total; every amount is at most all bitcoin, so only absurd input lists could
/// overflow, and those are capped rather than panicking.
fn sum(amounts: impl Iterator<Item = Amount>) -> Amount {
    amounts.fold(Amount::ZERO, |total, a| {
        total.checked_add(a).unwrap_or(Amount::MAX_MONEY)
    })
}

fn unsigned_input(utxo: &Utxo) -> TxIn {
    TxIn {
        previous_output: utxo.outpoint,
        script_sig: ScriptBuf::new(),
        // Replaceable (BIP-125), so a stuck spend can be bumped.
        sequence: Sequence::ENABLE_RBF_NO_LOCKTIME,
        witness: Witness::new(),
    }
}

/// The BIP-143 sighash (SIGHASH_ALL) of each input, spending outputs locked to
/// `spent_script` (a P2WPKH script): the payloads the network signs.
pub fn sighashes(plan: &Plan, spent_script: &Script) -> Result<Vec<[u8; 32]>> {
    let mut cache = SighashCache::new(&plan.tx);
    plan.spent
        .iter()
        .enumerate()
        .map(|(index, utxo)| {
            cache
                .p2wpkh_signature_hash(index, spent_script, utxo.amount, EcdsaSighashType::All)
                .map(|hash| hash.to_byte_array())
                .map_err(|e| Error::invalid("input", e))
        })
        .collect()
}

/// Puts each input's signature and the key into its witness.
pub fn finalize(
    plan: Plan,
    key: &CompressedPublicKey,
    signatures: &[EcdsaSignature],
) -> Result<Transaction> {
    let mut tx = plan.tx;
    if signatures.len() != tx.input.len() {
        return Err(Error::invalid(
            "signatures",
            format!("{} for {} inputs", signatures.len(), tx.input.len()),
        ));
    }
    for (input, signature) in tx.input.iter_mut().zip(signatures) {
        let compact = ecdsa::compact(signature)?;
        let signature = secp256k1::ecdsa::Signature::from_compact(&compact)
            .map_err(|e| Error::BadAnswer(format!("not a secp256k1 signature: {e}")))?;
        input.witness =
            Witness::p2wpkh(&::bitcoin::ecdsa::Signature::sighash_all(signature), &key.0);
    }
    Ok(tx)
}

/// Spends outputs of the address of `near`'s account and `path` as `request` says.
pub async fn send(
    near: &Near,
    path: &str,
    request: &BtcSend,
    progress: &Progress,
) -> Result<BtcSent> {
    let key = EcdsaKey::fetch(near, &near.account(), path, ecdsa::DOMAIN).await?;
    let public = compressed_key(&key)?;
    let from = p2wpkh_address(&key, request.network)?;
    progress.step(format_args!("spending from {from}"));
    let spent_script = from.script_pubkey();
    let change_to = request
        .change
        .as_ref()
        .map(Address::script_pubkey)
        .unwrap_or_else(|| spent_script.clone());
    let (candidates, selection, fee_rate) = inputs(request, &from, progress).await?;
    let plan = plan(
        candidates,
        selection,
        &request.payments,
        &change_to,
        fee_rate,
        &from.to_string(),
    )?;
    let hashes = sighashes(&plan, &spent_script)?;
    let mut signatures = Vec::with_capacity(hashes.len());
    for (index, hash) in hashes.into_iter().enumerate() {
        progress.step(format_args!("input {} of {}", index + 1, plan.spent.len()));
        signatures.push(key.sign(near, hash, progress).await?);
    }
    let summary = Summary::of(&plan, &from, request.network);
    let tx = finalize(plan, &public, &signatures)?;
    let broadcast = match &request.broadcast {
        Some(url) => Some(broadcast(&Esplora::new(url), &tx, progress).await?),
        None => None,
    };
    Ok(summary.sent(&tx, broadcast))
}

/// The candidates, how to choose among them, and the fee rate.
async fn inputs(
    request: &BtcSend,
    from: &Address,
    progress: &Progress,
) -> Result<(Vec<Utxo>, Selection, FeeRate)> {
    match &request.inputs {
        Inputs::Listed(utxos) => {
            let rate = request.fee_rate.ok_or_else(|| {
                Error::invalid(
                    "fee rate",
                    "give --fee-rate (satoshis per vbyte), or --esplora to ask for one",
                )
            })?;
            Ok((utxos.clone(), Selection::All, rate))
        }
        Inputs::Esplora(url) => {
            let esplora = Esplora::new(url);
            progress.step(format_args!("listing the outputs of {from} at {url}"));
            let utxos = esplora.utxos(from).await?;
            let rate = match request.fee_rate {
                Some(rate) => rate,
                None => esplora.fee_rate(FEE_TARGET_BLOCKS).await?,
            };
            Ok((utxos, Selection::AsNeeded, rate))
        }
    }
}

/// The confirmation target when the fee rate is asked of Esplora.
const FEE_TARGET_BLOCKS: u16 = 6;

async fn broadcast(esplora: &Esplora, tx: &Transaction, progress: &Progress) -> Result<String> {
    progress.step(format_args!("broadcasting {}", tx.compute_txid()));
    let txid = esplora.broadcast(tx).await?;
    if txid != tx.compute_txid() {
        return Err(Error::ForeignRpc {
            chain: CHAIN,
            method: "POST /tx".into(),
            reason: format!("the server names it {txid}, not {}", tx.compute_txid()),
        });
    }
    Ok(txid.to_string())
}

/// What the report says about the plan, taken before its transaction is signed.
struct Summary {
    from: String,
    inputs: Vec<String>,
    input_sat: u64,
    outputs: Vec<String>,
    change_sat: Option<u64>,
    fee_sat: u64,
}

impl Summary {
    fn of(plan: &Plan, from: &Address, network: Network) -> Summary {
        let outputs = plan
            .tx
            .output
            .iter()
            .map(|out| {
                let to = Address::from_script(&out.script_pubkey, network)
                    .map(|a| a.to_string())
                    .unwrap_or_else(|_| out.script_pubkey.to_hex_string());
                format!("{to}:{}", out.value.to_sat())
            })
            .collect();
        Summary {
            from: from.to_string(),
            inputs: plan.spent.iter().map(|u| u.outpoint.to_string()).collect(),
            input_sat: sum(plan.spent.iter().map(|u| u.amount)).to_sat(),
            outputs,
            change_sat: plan.change.map(Amount::to_sat),
            fee_sat: plan.fee.to_sat(),
        }
    }

    fn sent(self, tx: &Transaction, broadcast: Option<String>) -> BtcSent {
        BtcSent {
            from: self.from,
            txid: tx.compute_txid().to_string(),
            raw_transaction: serialize_hex(tx),
            inputs: self.inputs,
            input_sat: self.input_sat,
            outputs: self.outputs,
            change_sat: self.change_sat,
            fee_sat: self.fee_sat,
            vsize: tx.vsize(),
            broadcast,
        }
    }
}

fn describe_sats(amount: Amount) -> String {
    format!("{} sat", amount.to_sat())
}

impl std::fmt::Display for BtcSent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "txid:         {}", self.txid)?;
        writeln!(f, "from:         {}", self.from)?;
        writeln!(
            f,
            "inputs:       {} ({} sat)",
            self.inputs.join(", "),
            self.input_sat
        )?;
        writeln!(f, "outputs:      {}", self.outputs.join(", "))?;
        writeln!(
            f,
            "fee:          {} sat ({} vbytes)",
            self.fee_sat, self.vsize
        )?;
        match &self.broadcast {
            Some(txid) => writeln!(f, "broadcast:    accepted as {txid}")?,
            None => writeln!(
                f,
                "broadcast:    not sent (give --broadcast URL to send it)"
            )?,
        }
        write!(f, "raw:          {}", self.raw_transaction)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ecdsa::testing::LocalKey;

    fn regtest_address(seed: u8) -> Address {
        p2wpkh_address(&LocalKey::new(seed).key, Network::Regtest).unwrap()
    }

    fn utxo(n: u8, sats: u64) -> Utxo {
        Utxo {
            outpoint: OutPoint {
                txid: Txid::from_byte_array([n; 32]),
                vout: u32::from(n),
            },
            amount: Amount::from_sat(sats),
        }
    }

    fn pay(sats: u64) -> Vec<Payment> {
        vec![Payment {
            address: regtest_address(2),
            amount: Amount::from_sat(sats),
        }]
    }

    fn rate(sat_vb: u64) -> FeeRate {
        FeeRate::from_sat_per_vb(sat_vb).unwrap()
    }

    #[test]
    fn utxos_and_payments_parse_from_the_command_line() {
        let txid = "a".repeat(64);
        let utxo: Utxo = format!("{txid}:3:5000").parse().unwrap();
        assert_eq!(utxo.outpoint.vout, 3);
        assert_eq!(utxo.amount, Amount::from_sat(5000));
        assert!(format!("{txid}:3").parse::<Utxo>().is_err());
        assert!(format!("{txid}:3:1.5").parse::<Utxo>().is_err());
        assert!(format!("{txid}:3:{}", u64::MAX)
            .parse::<Utxo>()
            .unwrap_err()
            .contains("all bitcoin"));

        let to = regtest_address(2).to_string();
        let payment = Payment::parse(&format!("{to}:1000"), Network::Regtest).unwrap();
        assert_eq!(payment.amount, Amount::from_sat(1000));
        let wrong_network = Payment::parse(&format!("{to}:1000"), Network::Bitcoin).unwrap_err();
        assert!(
            wrong_network.contains("ADDRESS:SATOSHIS"),
            "{wrong_network}"
        );
    }

    #[test]
    fn change_returns_to_the_sender_and_the_fee_meets_the_rate() {
        let sender = regtest_address(1).script_pubkey();
        let plan = plan(
            vec![utxo(1, 50_000), utxo(2, 70_000)],
            Selection::All,
            &pay(100_000),
            &sender,
            rate(2),
            "sender",
        )
        .unwrap();
        let change = plan.change.unwrap();
        assert_eq!(plan.tx.output.len(), 2);
        assert_eq!(plan.tx.output[1].script_pubkey, sender);
        assert_eq!(
            change + plan.fee + Amount::from_sat(100_000),
            Amount::from_sat(120_000)
        );
        // Two P2WPKH inputs, two P2WPKH outputs: about 209 vbytes signed.
        assert!((400..=440).contains(&plan.fee.to_sat()), "{}", plan.fee);
    }

    #[test]
    fn dust_change_goes_to_the_fee_and_short_inputs_are_refused() {
        let sender = regtest_address(1).script_pubkey();
        let no_change = plan(
            vec![utxo(1, 100_400)],
            Selection::All,
            &pay(100_000),
            &sender,
            rate(1),
            "sender",
        )
        .unwrap();
        assert_eq!(no_change.change, None);
        assert_eq!(no_change.tx.output.len(), 1);
        assert_eq!(no_change.fee, Amount::from_sat(400));

        let short = plan(
            vec![utxo(1, 100_000)],
            Selection::All,
            &pay(100_000),
            &sender,
            rate(1),
            "bcrt1qsender",
        )
        .unwrap_err()
        .to_string();
        assert!(
            short.starts_with("insufficient funds on Bitcoin: bcrt1qsender has 100000 sat"),
            "{short}"
        );

        let dust = plan(
            vec![utxo(1, 100_000)],
            Selection::All,
            &pay(100),
            &sender,
            rate(1),
            "s",
        )
        .unwrap_err()
        .to_string();
        assert!(dust.contains("dust"), "{dust}");
    }

    #[test]
    fn esplora_outputs_are_chosen_largest_first_as_needed() {
        let sender = regtest_address(1).script_pubkey();
        let plan = plan(
            vec![
                utxo(1, 10_000),
                utxo(2, 90_000),
                utxo(3, 60_000),
                utxo(4, 5_000),
            ],
            Selection::AsNeeded,
            &pay(120_000),
            &sender,
            rate(1),
            "s",
        )
        .unwrap();
        let chosen: Vec<u64> = plan.spent.iter().map(|u| u.amount.to_sat()).collect();
        assert_eq!(chosen, [90_000, 60_000]);
    }

    /// Signs every input with a local key and checks it with Bitcoin Core's
    /// consensus code; a changed signature byte or amount must fail.
    #[test]
    fn signed_inputs_pass_bitcoin_core_consensus_checks() {
        let local = LocalKey::new(7);
        let public = compressed_key(&local.key).unwrap();
        let from = p2wpkh_address(&local.key, Network::Regtest).unwrap();
        let script = from.script_pubkey();
        let spent = vec![utxo(1, 50_000), utxo(2, 70_000)];
        let plan = plan(
            spent.clone(),
            Selection::All,
            &pay(100_000),
            &script,
            rate(3),
            "s",
        )
        .unwrap();
        let signatures: Vec<_> = sighashes(&plan, &script)
            .unwrap()
            .into_iter()
            .map(|hash| local.sign(hash))
            .collect();
        let tx = finalize(plan, &public, &signatures).unwrap();
        let bytes = ::bitcoin::consensus::serialize(&tx);
        let verify = |bytes: &[u8], index: usize, amount: Amount| {
            bitcoinconsensus::verify(script.as_bytes(), amount.to_sat(), bytes, None, index)
        };
        for (index, utxo) in spent.iter().enumerate() {
            verify(&bytes, index, utxo.amount).unwrap();
            let wrong_amount = utxo.amount + Amount::from_sat(1);
            assert!(verify(&bytes, index, wrong_amount).is_err());
        }
        // Predicted at the largest signature size: never below the real size.
        assert!(tx.vsize() as u64 * 3 <= 120_000 - 100_000 - tx.output[1].value.to_sat());

        let mut tampered = tx.clone();
        let mut witness: Vec<Vec<u8>> = tampered.input[1]
            .witness
            .iter()
            .map(<[u8]>::to_vec)
            .collect();
        let last_s_byte = witness[0].len() - 2; // before the sighash type byte
        witness[0][last_s_byte] ^= 1;
        tampered.input[1].witness = Witness::from_slice(&witness);
        let bytes = ::bitcoin::consensus::serialize(&tampered);
        verify(&bytes, 0, spent[0].amount).unwrap();
        assert!(verify(&bytes, 1, spent[1].amount).is_err());
    }
}
