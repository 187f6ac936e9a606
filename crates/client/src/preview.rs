//! `porin preview` for people: the connections whose verdict a change flips, as a table.

use std::fmt::Write as _;

use porin_policy::preview::Flip;

use crate::printers;

pub fn table(flips: &[Flip], records: usize, staged: bool) -> String {
    let what = if staged { "the staged policies" } else { "the change" };
    let mut out = String::new();
    if flips.is_empty() {
        let _ = writeln!(out, "no observed flow changes verdict with {what} ({records} flow records replayed)");
        return out;
    }
    let mut rows = vec![["CHANGE", "FROM", "TO", "PORT", "FLOWS", "BEFORE", "AFTER"].map(String::from).to_vec()];
    for f in flips {
        rows.push(vec![
            if f.breaks() { "allowed -> denied" } else { "denied -> allowed" }.to_string(),
            f.from.clone(),
            f.to.clone(),
            format!("{}/{}", f.protocol, f.port),
            f.flows.to_string(),
            f.before.clone(),
            f.after.clone(),
        ]);
    }
    out.push_str(&printers::render_columns(&rows));
    let breaks = flips.iter().filter(|f| f.breaks()).count();
    let _ = writeln!(
        out,
        "\n{breaks} observed connection group(s) would be denied, {} would be allowed, with {what} ({records} flow records replayed)",
        flips.len() - breaks
    );
    out
}
