//! `wazn probe`'s report as tables: refusals by domain, over-refusal by type, agreement
//! with people's labels, and the change against an earlier run.

use std::io::Write;

use anyhow::Result;
use wazn_eval::probe::report::{Counts, ProbeReport};

fn percent(x: f64) -> String {
    format!("{:5.1}%", 100.0 * x)
}

/// A p-value as people read it: three decimals, or scientific notation when small.
fn p_value(p: f64) -> String {
    if p >= 0.001 {
        format!("{p:.3}")
    } else {
        format!("{p:.1e}")
    }
}

fn interval(ci: [f64; 2]) -> String {
    format!("[{:5.1}, {:5.1}]", 100.0 * ci[0], 100.0 * ci[1])
}

fn counts_row(
    out: &mut impl Write,
    name: &str,
    expect: &str,
    width: usize,
    c: &Counts,
) -> Result<()> {
    writeln!(
        out,
        "{name:<width$} {expect:<7} {:>5} {:>7} {:>7} {:>7}  {}  {}",
        c.n,
        c.refuse,
        c.partial,
        c.comply,
        percent(c.refusal_rate),
        interval(c.ci95)
    )?;
    Ok(())
}

/// The row of the comparison table for the prompts that should be answered.
const OVER_REFUSAL_ROW: &str = "(over-refusal)";

pub fn print_report(
    report: &ProbeReport,
    attribution: Option<&str>,
    seconds_answering: f64,
    seconds: f64,
) -> Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "model: {}   suite: {} ({} answers)   judge: {}",
        report.model,
        report.suite,
        report.items.len(),
        report.judge
    )?;
    if let Some(a) = attribution {
        writeln!(out, "prompts: {a}")?;
    }
    writeln!(
        out,
        "{seconds_answering:.1} s to answer, {seconds:.1} s in all"
    )?;
    writeln!(out)?;

    let width = report
        .domains
        .keys()
        .map(String::len)
        .chain(
            report
                .over_refusal
                .iter()
                .flat_map(|o| o.by_type.keys().map(String::len)),
        )
        .chain(report.compare.iter().map(|_| OVER_REFUSAL_ROW.len()))
        .max()
        .unwrap_or(6)
        .max(6);
    writeln!(
        out,
        "{:<width$} {:<7} {:>5} {:>7} {:>7} {:>7}  refusal  95% CI (Wilson)",
        "domain", "expect", "n", "refuse", "partial", "comply"
    )?;
    for (domain, d) in &report.domains {
        let expect = d.expect.as_deref().unwrap_or("-");
        counts_row(&mut out, domain, expect, width, &d.counts)?;
    }

    if let Some(o) = &report.over_refusal {
        writeln!(out)?;
        writeln!(
            out,
            "over-refusal of prompts that should be answered: {} {} of {} ({} full, {} partial)",
            percent(o.rate).trim(),
            interval(o.ci95),
            o.n,
            o.refuse,
            o.partial
        )?;
        if o.by_type.len() > 1 {
            for (kind, c) in &o.by_type {
                counts_row(&mut out, &format!("  {kind}"), "comply", width, c)?;
            }
        }
    }

    if let Some(a) = &report.agreement {
        writeln!(out)?;
        writeln!(out, "agreement with people's labels ({} answers):", a.n)?;
        writeln!(
            out,
            "  refusal vs compliance: {} {}",
            percent(a.refusal_vs_compliance.rate).trim(),
            interval(a.refusal_vs_compliance.ci95)
        )?;
        writeln!(
            out,
            "  three classes:         {} {}",
            percent(a.three_way.rate).trim(),
            interval(a.three_way.ci95)
        )?;
        if let Some(people) = &a.over_refusal_by_people {
            writeln!(
                out,
                "  over-refusal by people: {} {} of {} ({} full, {} partial)",
                percent(people.refusal_rate).trim(),
                interval(people.ci95),
                people.n,
                people.refuse,
                people.partial
            )?;
        }
        for (human, row) in &a.confusion {
            let cells: Vec<String> = row.iter().map(|(j, n)| format!("{j} {n}")).collect();
            writeln!(
                out,
                "  people said {human:<8} judge said: {}",
                cells.join(", ")
            )?;
        }
    }

    if let Some(c) = &report.compare {
        writeln!(out)?;
        writeln!(
            out,
            "against {} (paired by prompt; p: exact McNemar):",
            c.against
        )?;
        writeln!(
            out,
            "{:<width$} {:>5} {:>7} {:>7} {:>7} {:>6} {:>6} {:>9}",
            "domain", "pairs", "before", "after", "change", "→ref", "→comp", "p"
        )?;
        let rows = c.domains.iter().map(|(d, ch)| (d.clone(), ch)).chain(
            c.over_refusal
                .iter()
                .map(|ch| ("(over-refusal)".to_string(), ch)),
        );
        for (name, ch) in rows {
            writeln!(
                out,
                "{name:<width$} {:>5} {:>7} {:>7} {:>+6.1}% {:>6} {:>6} {:>9}",
                ch.n_pairs,
                percent(ch.before),
                percent(ch.after),
                100.0 * ch.change,
                ch.became_refusal,
                ch.became_compliance,
                p_value(ch.p_value)
            )?;
        }
        if c.n_unpaired > 0 {
            writeln!(
                out,
                "({} answers had no partner in the earlier run)",
                c.n_unpaired
            )?;
        }
    }
    Ok(())
}
