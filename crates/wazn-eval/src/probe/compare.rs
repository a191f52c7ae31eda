//! A run against an earlier one (`--compare`), typically a customized model against its
//! base: per domain, the change in refusal rate on the prompts both runs answered, with
//! an exact McNemar p-value. The answers are paired by prompt (and sample), so the test
//! counts only the prompts whose verdict changed side (refusal ↔ compliance), which is
//! far more sensitive than comparing two independent rates.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;
use serde_json::Value;

use super::report::JudgedItem;
use super::{Expect, Verdict};
use crate::binomial::mcnemar_exact;
use crate::EvalError;

/// One domain's change.
#[derive(Clone, Debug, Serialize)]
pub struct DomainChange {
    /// Prompts (and samples) answered in both runs.
    pub n_pairs: u64,
    /// Refusal rate (full or partial) on those pairs, earlier and now.
    pub before: f64,
    pub after: f64,
    pub change: f64,
    /// Pairs that complied before and refuse now, and the other way.
    pub became_refusal: u64,
    pub became_compliance: u64,
    /// Exact McNemar p-value of no change.
    pub p_value: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Comparison {
    /// The earlier run's model.
    pub against: String,
    pub domains: BTreeMap<String, DomainChange>,
    /// The same, over the prompts that should be answered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub over_refusal: Option<DomainChange>,
    /// Answers of this run with no partner in the earlier one.
    pub n_unpaired: u64,
}

/// An earlier run's verdicts, by (id, sample).
struct Earlier {
    model: String,
    verdicts: HashMap<(String, u64), Verdict>,
}

fn field<'a>(value: &'a Value, key: &str) -> Result<&'a Value, String> {
    value.get(key).ok_or_else(|| format!("it has no \"{key}\""))
}

fn read_earlier(earlier: &Value, suite: &str, judge: &str) -> Result<Earlier, String> {
    if !earlier.is_object() {
        return Err("it is not a JSON object (give the output of `wazn probe --json`)".into());
    }
    let their_suite = field(earlier, "suite")?.as_str().unwrap_or_default();
    if their_suite != suite {
        return Err(format!(
            "it is a run of suite {their_suite:?}, this one is of {suite:?}"
        ));
    }
    let their_judge = field(earlier, "judge")?.as_str().unwrap_or_default();
    if their_judge != judge {
        return Err(format!(
            "it was judged by {their_judge:?}, this run by {judge:?}: verdicts of different \
             judges are not comparable"
        ));
    }
    let items = field(earlier, "items")?
        .as_array()
        .ok_or("\"items\" is not a list")?;
    let mut verdicts = HashMap::new();
    for (i, item) in items.iter().enumerate() {
        let bad = |why: &str| format!("item {}: {why}", i + 1);
        let id = match item.get("id") {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            _ => return Err(bad("no \"id\"")),
        };
        let sample = item.get("sample").and_then(Value::as_u64).unwrap_or(0);
        let verdict = item
            .get("verdict")
            .and_then(Value::as_str)
            .and_then(Verdict::parse)
            .ok_or_else(|| bad("no \"verdict\" of comply, refuse or partial"))?;
        verdicts.insert((id, sample), verdict);
    }
    Ok(Earlier {
        model: earlier
            .get("model")
            .and_then(Value::as_str)
            .unwrap_or("?")
            .to_string(),
        verdicts,
    })
}

fn change(pairs: &[(Verdict, Verdict)]) -> DomainChange {
    let n = pairs.len() as u64;
    let rate = |refused: usize| {
        if n == 0 {
            0.0
        } else {
            refused as f64 / n as f64
        }
    };
    let before = rate(pairs.iter().filter(|(b, _)| b.refused()).count());
    let after = rate(pairs.iter().filter(|(_, a)| a.refused()).count());
    let became_refusal = pairs
        .iter()
        .filter(|(b, a)| !b.refused() && a.refused())
        .count() as u64;
    let became_compliance = pairs
        .iter()
        .filter(|(b, a)| b.refused() && !a.refused())
        .count() as u64;
    DomainChange {
        n_pairs: n,
        before,
        after,
        change: after - before,
        became_refusal,
        became_compliance,
        p_value: mcnemar_exact(became_refusal, became_compliance),
    }
}

/// Checks, before any work, that an earlier run can be compared with one of `suite`
/// judged by `judge`.
pub fn check_earlier(earlier: &Value, suite: &str, judge: &str) -> Result<(), EvalError> {
    read_earlier(earlier, suite, judge)
        .map(|_| ())
        .map_err(|why| EvalError::Invalid(format!("cannot compare with the earlier run: {why}")))
}

/// Compares `items` (of `suite`, judged by `judge`) with an earlier run's JSON.
pub fn compare(
    items: &[JudgedItem],
    suite: &str,
    judge: &str,
    earlier: &Value,
) -> Result<Comparison, EvalError> {
    let earlier = read_earlier(earlier, suite, judge)
        .map_err(|why| EvalError::Invalid(format!("cannot compare with the earlier run: {why}")))?;
    let mut by_domain: BTreeMap<&str, Vec<(Verdict, Verdict)>> = BTreeMap::new();
    let mut safe = Vec::new();
    let mut n_unpaired = 0;
    for item in items {
        match earlier.verdicts.get(&(item.id.clone(), item.sample as u64)) {
            Some(&before) => {
                by_domain
                    .entry(&item.domain)
                    .or_default()
                    .push((before, item.verdict));
                if item.expect == Some(Expect::Comply) {
                    safe.push((before, item.verdict));
                }
            }
            None => n_unpaired += 1,
        }
    }
    if by_domain.is_empty() {
        return Err(EvalError::Invalid(
            "cannot compare with the earlier run: it has none of this run's prompts".into(),
        ));
    }
    Ok(Comparison {
        against: earlier.model,
        domains: by_domain
            .into_iter()
            .map(|(d, pairs)| (d.to_string(), change(&pairs)))
            .collect(),
        over_refusal: (!safe.is_empty()).then(|| change(&safe)),
        n_unpaired,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn item(id: &str, verdict: Verdict) -> JudgedItem {
        JudgedItem {
            id: id.into(),
            sample: 0,
            domain: "d".into(),
            kind: None,
            expect: Some(Expect::Refuse),
            verdict,
            response_sha256: String::new(),
            judge_probabilities: None,
            human: None,
            finish_reason: None,
            text: None,
            reasoning: None,
        }
    }

    #[test]
    fn paired_changes_are_tested() {
        use Verdict::*;
        // Six prompts went from refusal to compliance, none the other way.
        let before: Vec<Value> = (0..8)
            .map(|i| json!({"id": i.to_string(), "domain": "d", "verdict": "refuse"}))
            .collect();
        let earlier = json!({"model": "base", "suite": "s", "judge": "keyword", "items": before});
        let now: Vec<JudgedItem> = (0..9)
            .map(|i| item(&i.to_string(), if i < 6 { Comply } else { Partial }))
            .collect();
        let c = compare(&now, "s", "keyword", &earlier).unwrap();
        let d = &c.domains["d"];
        assert_eq!(
            (d.n_pairs, d.became_compliance, d.became_refusal),
            (8, 6, 0)
        );
        assert_eq!((d.before, d.after), (1.0, 0.25));
        assert!((d.p_value - 0.03125).abs() < 1e-12);
        assert_eq!((c.n_unpaired, c.against.as_str()), (1, "base"));
    }

    #[test]
    fn runs_that_do_not_match_are_refused() {
        let now = vec![item("1", Verdict::Refuse)];
        for (earlier, needle) in [
            (json!([1]), "not a JSON object"),
            (
                json!({"suite": "harmbench", "judge": "keyword", "items": []}),
                "suite \"harmbench\"",
            ),
            (
                json!({"suite": "s", "judge": "model:x", "items": []}),
                "not comparable",
            ),
            (json!({"suite": "s", "judge": "keyword"}), "no \"items\""),
            (
                json!({"suite": "s", "judge": "keyword", "items": [{"id": "1"}]}),
                "item 1: no \"verdict\"",
            ),
            (
                json!({"suite": "s", "judge": "keyword", "items": [{"id": "2", "verdict": "comply"}]}),
                "none of this run's prompts",
            ),
        ] {
            let err = compare(&now, "s", "keyword", &earlier)
                .err()
                .unwrap()
                .to_string();
            assert!(err.contains(needle), "{earlier}: {err}");
        }
    }
}
