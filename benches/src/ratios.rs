//! The `ratios` bench's results in machine-readable form: `cargo bench -p benches --bench ratios
//! -- --json PATH` writes one [`Ratios`] as JSON next to the Markdown tables it prints, and
//! `bench-report` reads it back. Field names are the JSON format's; keep them stable.

use serde::{Deserialize, Serialize};

use crate::units::time_and_rate;

/// Format version of [`Ratios`].
pub const FORMAT: u32 = 1;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Ratios {
    pub format: u32,
    /// Rounds per algorithm; each contestant ran one slice per round.
    pub rounds: usize,
    /// Length of one contestant's slice, milliseconds.
    pub slice_ms: f64,
    /// Verification, one row per algorithm.
    pub verify: Vec<VerifyRow>,
    /// Signing with keys in SoftHSM, one row per algorithm.
    pub sign: Vec<SignRow>,
    /// The engine's batched verification against the single path, one row per algorithm.
    #[serde(default)]
    pub batch: Vec<BatchRow>,
    /// Whether crypto_mb served the batched path, or why not.
    #[serde(default)]
    pub multibuffer: String,
}

/// Median time per token of 64-token batches through the engine's batched path
/// (`engine::lanes::verify_all`), the single path (`jose::jwt::verify` token by token) and raw
/// aws-lc-rs signature checks of the same tokens, one core; and the median over rounds of each
/// round's throughput ratio.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct BatchRow {
    pub alg: String,
    pub batched_ns: f64,
    pub single_ns: f64,
    pub raw_ns: f64,
    pub batched_vs_single: f64,
    pub batched_vs_raw: f64,
    /// The batched path with no library (every signature single): its cost where crypto_mb
    /// does not serve, as its throughput over the single path's.
    #[serde(default)]
    pub unvectorised_ns: f64,
    #[serde(default)]
    pub unvectorised_vs_single: f64,
}

/// Median time per verification of each contestant, and the median over rounds of each
/// round's ratio (a throughput ratio: the other's time divided by tessera's).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct VerifyRow {
    pub alg: String,
    pub tessera_ns: f64,
    pub raw_ns: f64,
    pub jsonwebtoken_ns: f64,
    pub tessera_vs_raw: f64,
    pub tessera_vs_jsonwebtoken: f64,
}

/// Median time per signature through tessera's session pool and with a bare `C_Sign`, and the
/// median over rounds of each round's throughput ratio.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SignRow {
    pub alg: String,
    pub tessera_ns: f64,
    pub pkcs11_ns: f64,
    pub tessera_vs_pkcs11: f64,
}

impl VerifyRow {
    /// The head of the Markdown table of [`VerifyRow::markdown`] rows.
    pub const HEADER: &'static str = "| alg | tessera | raw | jsonwebtoken | tessera / raw | tessera / jsonwebtoken |\n|---|---|---|---|---|---|";

    /// This row of the verification table.
    pub fn markdown(&self) -> String {
        format!(
            "| {} | {} | {} | {} | {:.3} | {:.2}× |",
            self.alg,
            time_and_rate(self.tessera_ns),
            time_and_rate(self.raw_ns),
            time_and_rate(self.jsonwebtoken_ns),
            self.tessera_vs_raw,
            self.tessera_vs_jsonwebtoken
        )
    }
}

impl BatchRow {
    /// The head of the Markdown table of [`BatchRow::markdown`] rows.
    pub const HEADER: &'static str = "| alg | batched (per token) | single | raw | batched / single | batched / raw | batched without the library / single |\n|---|---|---|---|---|---|---|";

    /// This row of the batch table.
    pub fn markdown(&self) -> String {
        format!(
            "| {} | {} | {} | {} | {:.2}× | {:.2}× | {:.3} |",
            self.alg,
            time_and_rate(self.batched_ns),
            time_and_rate(self.single_ns),
            time_and_rate(self.raw_ns),
            self.batched_vs_single,
            self.batched_vs_raw,
            self.unvectorised_vs_single
        )
    }
}

impl SignRow {
    /// The head of the Markdown table of [`SignRow::markdown`] rows.
    pub const HEADER: &'static str =
        "| alg | tessera (pool) | pkcs11 (bare C_Sign) | tessera / pkcs11 |\n|---|---|---|---|";

    /// This row of the signing table.
    pub fn markdown(&self) -> String {
        format!(
            "| {} | {} | {} | {:.3} |",
            self.alg,
            time_and_rate(self.tessera_ns),
            time_and_rate(self.pkcs11_ns),
            self.tessera_vs_pkcs11
        )
    }
}
