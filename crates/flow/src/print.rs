//! Printers for `porin observe`: compact (one line per flow, like hubble), JSON lines, and an
//! aligned table. Colour (ANSI) only when asked for.
//!
//! Compact: `TIME  SRC -> DST  proto/port  DIRECTION  VERDICT  tier|policy|rule|action`, where SRC/DST are
//! `ns/pod:port` (or `ns/workload`, `netset:name`, `world:ip`), the trace shown is the deciding
//! entry, and a staged verdict is appended as `(staged: WOULD-DENY tier|policy|rule|action)`.

use anstyle::{AnsiColor, Style};
use std::io::{self, Write};

use crate::record::{FlowEndpoint, FlowRecord, PendingVerdict, Verdict};
use crate::time::{format_clock, format_rfc3339};

/// Output format (`-o`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    #[default]
    Compact,
    Json,
    Table,
    /// One JSON object per line in the shape of Hubble's `GetFlowsResponse` (`hubble observe -o json`).
    Hubble,
}

/// Writes flows in one format. Table output is buffered until [`Printer::finish`].
#[derive(Debug)]
pub struct Printer<W: Write> {
    out: W,
    format: OutputFormat,
    color: bool,
    node_name: bool,
    rows: Vec<[String; 12]>,
}

const TABLE_HEADER: [&str; 12] =
    ["END TIME", "NODE", "SOURCE", "DESTINATION", "PROTO", "PORT", "DIRECTION", "VERDICT", "STAGED", "PACKETS", "BYTES", "POLICY"];

fn endpoint(e: &FlowEndpoint) -> String {
    let name = e.display_name();
    match e.port {
        Some(p) => format!("{name}:{p}"),
        None => name,
    }
}

fn verdict_word(v: Verdict) -> &'static str {
    match v {
        Verdict::Allowed => "ALLOWED",
        Verdict::Denied => "DENIED",
    }
}

fn pending_word(v: PendingVerdict) -> &'static str {
    match v {
        PendingVerdict::WouldAllow => "WOULD-ALLOW",
        PendingVerdict::WouldDeny => "WOULD-DENY",
    }
}

fn paint(color: bool, fg: AnsiColor, s: &str) -> String {
    let style = Style::new().fg_color(Some(fg.into()));
    if color { format!("{style}{s}{style:#}") } else { s.to_string() }
}

impl<W: Write> Printer<W> {
    pub fn new(out: W, format: OutputFormat, color: bool) -> Self {
        Self { out, format, color, node_name: false, rows: Vec::new() }
    }

    /// Compact lines start with the reporting node's name (`--print-node-name`, as in hubble).
    pub fn print_node_name(mut self, yes: bool) -> Self {
        self.node_name = yes;
        self
    }

    /// One flow.
    pub fn print(&mut self, r: &FlowRecord) -> io::Result<()> {
        match self.format {
            OutputFormat::Json => {
                serde_json::to_writer(&mut self.out, r)?;
                self.out.write_all(b"\n")
            }
            OutputFormat::Hubble => {
                serde_json::to_writer(&mut self.out, &crate::hubble::to_hubble(r))?;
                self.out.write_all(b"\n")
            }
            OutputFormat::Compact => {
                let line = self.compact(r);
                writeln!(self.out, "{line}")
            }
            OutputFormat::Table => {
                self.rows.push(table_row(r));
                Ok(())
            }
        }
    }

    /// The compact line of `r` (without newline).
    pub fn compact(&self, r: &FlowRecord) -> String {
        let v = verdict_word(r.verdict);
        let v = paint(self.color, if r.verdict == Verdict::Allowed { AnsiColor::Green } else { AnsiColor::Red }, v);
        let clock = match self.node_name {
            true => format!("{} [{}]:", format_clock(r.end_time), r.node),
            false => format_clock(r.end_time),
        };
        let mut line = format!(
            "{}  {} -> {}  {}/{}  {}  {}  {}",
            clock,
            endpoint(&r.src),
            endpoint(&r.dst),
            r.protocol,
            r.port_label(),
            r.direction.as_str(),
            v,
            r.deciding_hit().unwrap_or("-"),
        );
        if let Some(drop) = &r.drop_reason {
            line.push_str(&format!(" ({drop})"));
        }
        if let Some(p) = r.pending_verdict {
            let hit = r.pending_trace.iter().rev().find(|h| h.ends_with("|allow") || h.ends_with("|deny"));
            let w = paint(self.color, AnsiColor::Yellow, pending_word(p));
            line.push_str(&format!("  (staged: {w}{})", hit.map(|h| format!(" {h}")).unwrap_or_default()));
        }
        if r.flows_started + r.flows_completed > 1 || r.packets_src_to_dst > 1 {
            line.push_str(&format!(
                "  [{} pkts, {} B; {} started, {} done, {} open]",
                r.packets_src_to_dst + r.packets_dst_to_src,
                r.bytes_src_to_dst + r.bytes_dst_to_src,
                r.flows_started,
                r.flows_completed,
                r.flows_open
            ));
        } else if r.open {
            line.push_str("  [open]");
        }
        line
    }

    /// Writes buffered table rows and flushes.
    pub fn finish(mut self) -> io::Result<W> {
        if self.format == OutputFormat::Table {
            let mut w = TABLE_HEADER.map(str::len);
            for row in &self.rows {
                for (i, c) in row.iter().enumerate() {
                    w[i] = w[i].max(c.chars().count());
                }
            }
            let header = TABLE_HEADER.map(String::from);
            for row in std::iter::once(&header).chain(&self.rows) {
                let mut line = String::new();
                for (i, c) in row.iter().enumerate() {
                    if i + 1 == row.len() {
                        line.push_str(c);
                    } else {
                        line.push_str(&format!("{c:<width$}  ", width = w[i]));
                    }
                }
                writeln!(self.out, "{}", line.trim_end())?;
            }
        }
        self.out.flush()?;
        Ok(self.out)
    }
}

fn table_row(r: &FlowRecord) -> [String; 12] {
    [
        format_rfc3339(r.end_time),
        r.node.clone(),
        endpoint(&r.src),
        endpoint(&r.dst),
        r.protocol.clone(),
        r.port_label(),
        r.direction.as_str().to_string(),
        verdict_word(r.verdict).to_string(),
        r.pending_verdict.map(pending_word).unwrap_or("-").to_string(),
        (r.packets_src_to_dst + r.packets_dst_to_src).to_string(),
        (r.bytes_src_to_dst + r.bytes_dst_to_src).to_string(),
        r.deciding_hit().unwrap_or("-").to_string(),
    ]
}

#[cfg(test)]
mod paint_tests {
    use super::*;

    #[test]
    fn colours_are_the_terminal_codes_and_plain_without_colour() {
        assert_eq!(paint(true, AnsiColor::Green, "ALLOWED"), "\x1b[32mALLOWED\x1b[0m");
        assert_eq!(paint(true, AnsiColor::Red, "DENIED"), "\x1b[31mDENIED\x1b[0m");
        assert_eq!(paint(true, AnsiColor::Yellow, "WOULD-DENY"), "\x1b[33mWOULD-DENY\x1b[0m");
        assert_eq!(paint(false, AnsiColor::Red, "DENIED"), "DENIED");
    }
}
