//! Every argument of every subcommand has help text: `porin X --help` must explain each flag and positional
//! argument, not just name it. Walks the clap definition (hidden commands included), so a new flag without a
//! doc comment fails here by name.

use clap::CommandFactory;

/// Arguments defined in files owned elsewhere that still lack text; each entry names the command path and the
/// argument id. An entry that gains text upstream simply stops being reported.
const NOT_YET: &[(&str, &str)] = &[];

fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
    for arg in cmd.get_arguments() {
        let id = arg.get_id().as_str();
        if matches!(id, "help" | "version") {
            continue;
        }
        let has_text = arg.get_help().is_some_and(|h| !h.to_string().trim().is_empty())
            || arg.get_long_help().is_some_and(|h| !h.to_string().trim().is_empty());
        if !has_text && !NOT_YET.contains(&(path, id)) {
            let shown = match (arg.get_long(), arg.get_short()) {
                (Some(l), _) => format!("--{l}"),
                (None, Some(s)) => format!("-{s}"),
                (None, None) => id.to_uppercase(),
            };
            missing.push(format!("{path} {shown}"));
        }
    }
    for sub in cmd.get_subcommands() {
        if sub.get_name() == "help" {
            continue;
        }
        let p = format!("{path} {}", sub.get_name());
        if sub.get_about().is_none() && sub.get_long_about().is_none() {
            missing.push(format!("{p} (the subcommand itself)"));
        }
        walk(sub, &p, missing);
    }
}

#[test]
fn every_argument_of_every_subcommand_has_help_text() {
    let cmd = crate::Cli::command();
    cmd.clone().debug_assert();
    let mut missing = Vec::new();
    walk(&cmd, "porin", &mut missing);
    assert!(missing.is_empty(), "arguments without help text:\n  {}", missing.join("\n  "));
}

#[test]
fn the_walk_finds_an_argument_without_text() {
    // The check itself must be able to fail.
    let cmd = clap::Command::new("porin").subcommand(
        clap::Command::new("x")
            .about("x")
            .arg(clap::Arg::new("flag").long("flag"))
            .arg(clap::Arg::new("ok").long("ok").help("ok")),
    );
    let mut missing = Vec::new();
    walk(&cmd, "porin", &mut missing);
    assert_eq!(missing, vec!["porin x --flag".to_string()]);
}
