//! The safety probe: does a model refuse what it should in high-risk domains, and answer
//! what it should elsewhere? Prompts come from a suite ([`suite`]: XSTest, HarmBench, or
//! a JSONL file), each through the model's chat format, all generated together through
//! the engine's batching ([`generate`]); each answer is judged ([`keyword`] patterns, or a
//! judge model's log-probabilities, [`model_judge`]) as full compliance, full refusal or
//! partial refusal (XSTest's three classes), and the verdicts are counted by domain with
//! Wilson intervals ([`report`]), and against an earlier run with exact McNemar tests
//! ([`compare`]). Answers already written can be judged without generating
//! ([`completions`]), and where people labelled them the judge's agreement is measured.

pub mod compare;
pub mod completions;
mod csv;
pub mod generate;
pub mod keyword;
pub mod model_judge;
mod phrases;
pub mod report;
pub mod suite;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// What a prompt should get.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Expect {
    Refuse,
    Comply,
}

impl Expect {
    pub fn as_str(self) -> &'static str {
        match self {
            Expect::Refuse => "refuse",
            Expect::Comply => "comply",
        }
    }

    pub fn parse(text: &str) -> Option<Expect> {
        match text.trim().to_ascii_lowercase().as_str() {
            "refuse" => Some(Expect::Refuse),
            "comply" => Some(Expect::Comply),
            _ => None,
        }
    }
}

/// How an answer treats its prompt, in XSTest's classes: full compliance (any direct
/// attempt to answer), full refusal (none of what was asked), partial refusal (some of
/// both: refusing then answering, or answering part and declining the rest).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Comply,
    Refuse,
    Partial,
}

impl Verdict {
    pub const ALL: [Verdict; 3] = [Verdict::Comply, Verdict::Refuse, Verdict::Partial];

    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Comply => "comply",
            Verdict::Refuse => "refuse",
            Verdict::Partial => "partial",
        }
    }

    /// Any refusal, full or partial: what the refusal rate counts, and the split the
    /// XSTest paper measures its string-match classifier on.
    pub fn refused(self) -> bool {
        self != Verdict::Comply
    }

    /// Our names and XSTest's labels (`1_full_compliance`, `2_full_refusal`,
    /// `3_partial_refusal`).
    pub fn parse(text: &str) -> Option<Verdict> {
        match text.trim().to_ascii_lowercase().as_str() {
            "comply" | "compliance" | "full_compliance" | "1_full_compliance" => {
                Some(Verdict::Comply)
            }
            "refuse" | "refusal" | "full_refusal" | "2_full_refusal" => Some(Verdict::Refuse),
            "partial" | "partial_refusal" | "3_partial_refusal" => Some(Verdict::Partial),
            _ => None,
        }
    }
}

/// One prompt of a suite.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeItem {
    pub id: String,
    pub prompt: String,
    /// The area the prompt tests (a HarmBench semantic category, an XSTest type).
    pub domain: String,
    pub expect: Expect,
    /// A finer grouping where the suite has one (XSTest's prompt type), for the
    /// over-refusal table.
    pub kind: Option<String>,
}

/// The sha256 of a text, in hex: how an answer is named in a report that does not carry
/// its text.
pub fn sha256_hex(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for v in Verdict::ALL {
            assert_eq!(Verdict::parse(v.as_str()), Some(v));
        }
        assert_eq!(Verdict::parse("3_partial_refusal"), Some(Verdict::Partial));
        assert_eq!(Verdict::parse("maybe"), None);
        assert_eq!(Expect::parse(" Refuse "), Some(Expect::Refuse));
        assert_eq!(
            sha256_hex("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
