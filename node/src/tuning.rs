//! The node's tunable settings: the one place for their defaults, their meanings
//! (shown by `mpc-node start --help`) and the rules they must satisfy (checked at
//! start, so a bad value is a clear error rather than a panic or flapping peers).

use crate::engine::StockSubset;
use serde::{Deserialize, Serialize};
use std::fmt;

/// The settings of config.toml that have defaults.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Tuning {
    pub poll_interval_ms: u64,
    pub triple_target: u64,
    pub presignature_target: u64,
    pub max_concurrent_generations: u64,
    pub protocol_timeout_secs: u64,
    pub heartbeat_ms: u64,
    pub live_window_ms: u64,
    pub leader_grace_ms: u64,
    pub peer_buffer_bytes: u64,
    /// Who takes part in the triple and presignature runs a node proposes:
    /// `"threshold"` or `"all"` (anything else is refused when config.toml is read).
    pub stock_subset: StockSubset,
}

impl Default for Tuning {
    fn default() -> Self {
        Tuning {
            poll_interval_ms: 200,
            triple_target: 8,
            presignature_target: 4,
            max_concurrent_generations: 4,
            protocol_timeout_secs: 60,
            heartbeat_ms: 250,
            live_window_ms: 1500,
            leader_grace_ms: 3000,
            peer_buffer_bytes: crate::p2p::DEFAULT_PEER_BUDGET as u64,
            stock_subset: StockSubset::Threshold,
        }
    }
}

/// A setting that breaks a rule, and the rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TuningError {
    pub setting: &'static str,
    pub value: u64,
    pub rule: String,
}

impl fmt::Display for TuningError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "config.toml: {} = {} is invalid: {}",
            self.setting, self.value, self.rule
        )
    }
}

impl std::error::Error for TuningError {}

impl Tuning {
    /// Each setting with its value (as written in config.toml) and meaning, in
    /// config.toml's order.
    fn described(&self) -> Vec<(&'static str, String, &'static str)> {
        let numbers: [(&'static str, u64, &'static str); 9] = [
            (
                "poll_interval_ms",
                self.poll_interval_ms,
                "how often the contract is read",
            ),
            (
                "triple_target",
                self.triple_target,
                "own triples to keep in stock",
            ),
            (
                "presignature_target",
                self.presignature_target,
                "own presignatures to keep in stock",
            ),
            (
                "max_concurrent_generations",
                self.max_concurrent_generations,
                "triple/presignature runs led at once",
            ),
            (
                "protocol_timeout_secs",
                self.protocol_timeout_secs,
                "a protocol run older than this is abandoned",
            ),
            (
                "heartbeat_ms",
                self.heartbeat_ms,
                "heartbeat period to peers",
            ),
            (
                "live_window_ms",
                self.live_window_ms,
                "a peer silent this long is treated as down",
            ),
            (
                "leader_grace_ms",
                self.leader_grace_ms,
                "the k-th live leader of a request waits k times this",
            ),
            (
                "peer_buffer_bytes",
                self.peer_buffer_bytes,
                "bytes of one peer's messages held at a time (over it: cut off, blamed)",
            ),
        ];
        let mut described: Vec<(&'static str, String, &'static str)> = numbers
            .into_iter()
            .map(|(name, value, meaning)| (name, value.to_string(), meaning))
            .collect();
        described.push((
            "stock_subset",
            format!("\"{}\"", self.stock_subset),
            "triple/presignature runs among \"threshold\" live participants \
             (rotating) or \"all\"",
        ));
        described
    }

    /// The settings with their defaults and meanings, for `--help`.
    pub fn help() -> String {
        Tuning::default()
            .described()
            .iter()
            .map(|(name, value, meaning)| {
                format!("  {:<34}{meaning}\n", format!("{name} = {value}"))
            })
            .collect()
    }

    /// Checks every rule; the first broken one is the error.
    pub fn validate(&self) -> Result<(), TuningError> {
        let rule = |ok: bool, setting: &'static str, value: u64, rule: String| {
            if ok {
                Ok(())
            } else {
                Err(TuningError {
                    setting,
                    value,
                    rule,
                })
            }
        };
        rule(
            self.poll_interval_ms >= 10,
            "poll_interval_ms",
            self.poll_interval_ms,
            "at least 10 ms (reading the contract faster only loads the RPC node)".into(),
        )?;
        rule(
            self.triple_target >= 2,
            "triple_target",
            self.triple_target,
            "at least 2 (a presignature takes two triples)".into(),
        )?;
        rule(
            self.presignature_target >= 1,
            "presignature_target",
            self.presignature_target,
            "at least 1 (without presignatures nothing can be signed)".into(),
        )?;
        rule(
            self.max_concurrent_generations >= 1,
            "max_concurrent_generations",
            self.max_concurrent_generations,
            "at least 1 (else no stock is ever made)".into(),
        )?;
        rule(
            self.protocol_timeout_secs >= 1,
            "protocol_timeout_secs",
            self.protocol_timeout_secs,
            "at least 1 s".into(),
        )?;
        rule(
            self.heartbeat_ms >= 10,
            "heartbeat_ms",
            self.heartbeat_ms,
            "at least 10 ms".into(),
        )?;
        rule(
            self.live_window_ms >= 2 * self.heartbeat_ms,
            "live_window_ms",
            self.live_window_ms,
            format!(
                "at least twice heartbeat_ms ({}), or peers flap between live and silent",
                2 * self.heartbeat_ms
            ),
        )?;
        rule(
            self.leader_grace_ms >= 1,
            "leader_grace_ms",
            self.leader_grace_ms,
            "at least 1 ms (0 makes every node lead every request at once)".into(),
        )?;
        let largest = crate::p2p::noise::MAX_MESSAGE as u64;
        rule(
            self.peer_buffer_bytes >= 4 * largest,
            "peer_buffer_bytes",
            self.peer_buffer_bytes,
            format!(
                "at least four of the largest message ({} bytes), or an honest peer \
                 busy with several runs is cut off",
                4 * largest
            ),
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_documented() {
        Tuning::default().validate().unwrap();
        let help = Tuning::help();
        for (name, value, _) in Tuning::default().described() {
            assert!(help.contains(&format!("{name} = {value}")), "{help}");
        }
    }

    #[test]
    fn stock_subset_is_threshold_or_all() {
        let read = |text: &str| toml::from_str::<Tuning>(text);
        assert_eq!(read("").unwrap().stock_subset, StockSubset::Threshold);
        assert_eq!(
            read("stock_subset = \"all\"").unwrap().stock_subset,
            StockSubset::All
        );
        let error = read("stock_subset = \"some\"").unwrap_err().to_string();
        assert!(error.contains("unknown variant"), "{error}");
        assert!(Tuning::help().contains("stock_subset = \"threshold\""));
    }

    /// Makes one setting break its rule.
    type Breaker = fn(&mut Tuning);

    #[test]
    fn each_rule_names_its_setting() {
        let broken: [(Breaker, &str); 9] = [
            (|t| t.poll_interval_ms = 0, "poll_interval_ms"),
            (|t| t.triple_target = 1, "triple_target"),
            (|t| t.presignature_target = 0, "presignature_target"),
            (
                |t| t.max_concurrent_generations = 0,
                "max_concurrent_generations",
            ),
            (|t| t.protocol_timeout_secs = 0, "protocol_timeout_secs"),
            (|t| t.heartbeat_ms = 0, "heartbeat_ms"),
            (|t| t.live_window_ms = 400, "live_window_ms"),
            (|t| t.leader_grace_ms = 0, "leader_grace_ms"),
            (|t| t.peer_buffer_bytes = 1 << 20, "peer_buffer_bytes"),
        ];
        for (breaks, setting) in broken {
            let mut tuning = Tuning::default();
            breaks(&mut tuning);
            let error = tuning.validate().unwrap_err();
            assert_eq!(error.setting, setting);
            assert!(error
                .to_string()
                .starts_with(&format!("config.toml: {setting} = ")));
        }
    }
}
