//! The `:` command line, in the k9s manner: `:restore shop before 09:40`, `:drill auth`,
//! `:backup shop`, `:filter state:orphan`, a tab's name, `:refresh`, `:help`, `:quit`; Tab
//! completes commands, source names and time words.

/// What a command line asks for. Times stay as typed: the wizard reads them in the local zone
/// and says what it understood.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Restore {
        source: String,
        before: Option<String>,
    },
    Drill {
        source: String,
    },
    Backup {
        source: String,
    },
    Filter(String),
    Tab(usize),
    Refresh,
    Help,
    Quit,
}

/// (name, takes a source, what it does) in the order completion offers them.
const COMMANDS: &[(&str, bool, &str)] = &[
    ("restore", true, "restore <source> [before <time>]"),
    (
        "drill",
        true,
        "drill <source>: restore, prove, report, drop",
    ),
    ("backup", true, "backup <source>"),
    ("filter", false, "filter <text>: as / in the catalog"),
    ("catalog", false, "the catalog tab"),
    ("jobs", false, "the jobs tab"),
    ("retention", false, "the retention tab"),
    ("wizard", false, "the restore tab"),
    ("refresh", false, "list the bucket again"),
    ("help", false, "the keys"),
    ("quit", false, "quit (asks when jobs run)"),
];

/// Words offered after `before`.
const TIME_WORDS: &[&str] = &["yesterday ", "today ", "-1h", "-1d"];

/// One line of usage per command, for the help screen.
pub fn usage() -> impl Iterator<Item = &'static str> {
    COMMANDS.iter().map(|(_, _, u)| *u)
}

pub fn parse(line: &str, sources: &[String]) -> Result<Command, String> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let Some((&name, rest)) = words.split_first() else {
        return Err("type a command, e.g. restore shop before 09:40 (Tab completes)".into());
    };
    let matching: Vec<&(&str, bool, &str)> = COMMANDS
        .iter()
        .filter(|(n, ..)| n.starts_with(name))
        .collect();
    let exact = COMMANDS.iter().find(|(n, ..)| *n == name);
    let (cmd, takes_source) = match (exact, &matching[..]) {
        (Some((n, s, _)), _) | (None, [(n, s, _)]) => (*n, *s),
        (None, []) => {
            return Err(format!(
                "no command {name:?}: try restore, drill, backup, filter, quit"
            ));
        }
        (None, _) => {
            return Err(format!(
                "{name:?} could be {}",
                matching
                    .iter()
                    .map(|(n, ..)| *n)
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
    };
    let (source, rest) = if takes_source {
        match rest.split_first() {
            Some((s, rest)) if sources.iter().any(|x| x == s) => ((*s).to_owned(), rest),
            Some((s, _)) => {
                return Err(format!(
                    "no source {s:?}: the sources are {}",
                    sources.join(", ")
                ));
            }
            None if sources.len() == 1 => (sources[0].clone(), rest),
            None => return Err(format!("{cmd} which source? {}", sources.join(", "))),
        }
    } else {
        (String::new(), rest)
    };
    let tail = |rest: &[&str]| rest.join(" ");
    let no_more = |rest: &[&str]| {
        if rest.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "{cmd} takes nothing after it, not {:?}",
                tail(rest)
            ))
        }
    };
    match cmd {
        "restore" => {
            let rest = match rest.first() {
                Some(&"before") => &rest[1..],
                _ => rest,
            };
            if rest.is_empty() && words.last() == Some(&"before") {
                return Err("before what time? e.g. 09:40, yesterday 09:40, -2h".into());
            }
            Ok(Command::Restore {
                source,
                before: (!rest.is_empty()).then(|| tail(rest)),
            })
        }
        "drill" => no_more(rest).map(|()| Command::Drill { source }),
        "backup" => no_more(rest).map(|()| Command::Backup { source }),
        "filter" => Ok(Command::Filter(tail(rest))),
        "catalog" => no_more(rest).map(|()| Command::Tab(0)),
        "jobs" => no_more(rest).map(|()| Command::Tab(1)),
        "retention" => no_more(rest).map(|()| Command::Tab(2)),
        "wizard" => no_more(rest).map(|()| Command::Tab(3)),
        "refresh" => no_more(rest).map(|()| Command::Refresh),
        "help" => no_more(rest).map(|()| Command::Help),
        _ => no_more(rest).map(|()| Command::Quit),
    }
}

/// The candidates for the word being typed (the last one, or a new one after a space).
pub fn candidates(line: &str, sources: &[String]) -> Vec<String> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let typing_new = line.is_empty() || line.ends_with(' ');
    let (done, partial) = if typing_new {
        (&words[..], "")
    } else {
        (&words[..words.len() - 1], words[words.len() - 1])
    };
    let offer: Vec<String> = match done {
        [] => COMMANDS.iter().map(|(n, ..)| format!("{n} ")).collect(),
        [cmd] if COMMANDS.iter().any(|(n, s, _)| n == cmd && *s) => {
            sources.iter().map(|s| format!("{s} ")).collect()
        }
        [c, _] if *c == "restore" => vec!["before ".into()],
        [c, _, b] if *c == "restore" && *b == "before" => {
            TIME_WORDS.iter().map(|w| (*w).to_owned()).collect()
        }
        _ => Vec::new(),
    };
    offer
        .into_iter()
        .filter(|o| o.starts_with(partial) && o.trim_end() != partial)
        .collect()
}

/// Completes the word being typed: fully when one candidate fits, else as far as they agree.
pub fn complete(line: &str, sources: &[String]) -> String {
    let options = candidates(line, sources);
    let Some(first) = options.first() else {
        return line.to_owned();
    };
    let common = options.iter().fold(first.clone(), |acc, o| {
        acc.chars()
            .zip(o.chars())
            .take_while(|(a, b)| a == b)
            .map(|(a, _)| a)
            .collect()
    });
    let stem = if line.is_empty() || line.ends_with(' ') {
        line
    } else {
        line.trim_end_matches(|c: char| c != ' ')
    };
    format!("{stem}{common}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sources() -> Vec<String> {
        vec!["shop".into(), "shipping".into(), "auth".into()]
    }

    #[test]
    fn commands_parse() {
        let s = sources();
        assert_eq!(
            parse("restore shop before 09:40", &s),
            Ok(Command::Restore {
                source: "shop".into(),
                before: Some("09:40".into())
            })
        );
        assert_eq!(
            parse("res shop yesterday 09:40", &s),
            Ok(Command::Restore {
                source: "shop".into(),
                before: Some("yesterday 09:40".into())
            })
        );
        assert_eq!(
            parse("restore auth", &s),
            Ok(Command::Restore {
                source: "auth".into(),
                before: None
            })
        );
        assert_eq!(
            parse("drill auth", &s),
            Ok(Command::Drill {
                source: "auth".into()
            })
        );
        assert_eq!(parse("q", &s), Ok(Command::Quit));
        assert_eq!(parse("jobs", &s), Ok(Command::Tab(1)));
        assert!(
            parse("drill nope", &s)
                .unwrap_err()
                .contains("no source \"nope\"")
        );
        assert!(parse("restore", &s).unwrap_err().contains("which source"));
        assert!(
            parse("restore shop before", &s)
                .unwrap_err()
                .contains("before what time")
        );
        assert!(parse("frobnicate", &s).unwrap_err().contains("no command"));
        assert!(parse("re", &s).unwrap_err().contains("could be"));
        // With one source it may be left out.
        assert_eq!(
            parse("drill", &["app".to_owned()]),
            Ok(Command::Drill {
                source: "app".into()
            })
        );
    }

    #[test]
    fn tab_completes() {
        let s = sources();
        assert_eq!(complete("dr", &s), "drill ");
        assert_eq!(complete("drill a", &s), "drill auth ");
        assert_eq!(
            complete("restore sh", &s),
            "restore sh",
            "shop and shipping agree on sh"
        );
        assert_eq!(complete("restore sho", &s), "restore shop ");
        assert_eq!(complete("restore shop ", &s), "restore shop before ");
        assert_eq!(
            complete("restore shop before y", &s),
            "restore shop before yesterday "
        );
        assert_eq!(candidates("restore s", &s), vec!["shop ", "shipping "]);
        assert_eq!(complete("quit ", &s), "quit ");
    }
}
