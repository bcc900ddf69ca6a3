//! Subcommands, their arguments and their output.

mod check;
mod clean;
mod copy;
mod daemon;
mod drill;
mod output;
mod pitr;
mod pitr_view;
mod progress;
mod promote;
mod prune;
mod signals;
mod table;
mod wal;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Args, CommandFactory, Parser, Subcommand};
use color_eyre::eyre::{Result, WrapErr, bail};
use lifeboat::catalog::Catalog;
use lifeboat::config::Config;
use lifeboat::demo::{self, DemoOptions};
use lifeboat::manifest::EngineKind;
use lifeboat::manifest::Trigger;
use lifeboat::pipeline::restore::{RestoreFrom, RestoreOptions};
use lifeboat::sniff::Content;
use lifeboat::{Error, Lifeboat, Selector, when};
use tokio_util::sync::CancellationToken;

use self::progress::CliProgress;

#[derive(Parser)]
#[command(
    name = "lifeboat",
    version,
    about = "Database backups you can prove: SQLite and PostgreSQL to S3 or a directory, \
             restores verified table by table",
    long_about = "Database backups you can prove: SQLite and PostgreSQL to S3 or a directory, \
                  restores verified table by table.\n\n\
                  With no subcommand, opens the console. `lifeboat demo` tries it on sample \
                  data with no server and no cloud."
)]
struct Cli {
    /// The config file (default: $XDG_CONFIG_HOME/lifeboat/lifeboat.toml).
    #[arg(long, short, global = true, env = "LIFEBOAT_CONFIG")]
    config: Option<PathBuf>,
    /// More log output on stderr (-v info, -vv debug).
    #[arg(long, short, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    /// No progress bars.
    #[arg(long, short, global = true)]
    quiet: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Write a commented lifeboat.toml.
    Init {
        /// Replace an existing file.
        #[arg(long)]
        force: bool,
    },
    /// Build sample databases and a local bucket with four months of history.
    Demo {
        /// Where to put it.
        #[arg(long, default_value = "lifeboat-demo")]
        dir: PathBuf,
        /// Rebuild an earlier demo in the same directory.
        #[arg(long)]
        force: bool,
        /// Size of the sample data (1.0 = tens of thousands of rows).
        #[arg(long, default_value_t = 1.0, hide = true)]
        scale: f64,
    },
    /// Back up sources now.
    Backup {
        /// Sources to back up (default: the only source, if there is one).
        sources: Vec<String>,
        /// Back up every configured source.
        #[arg(long, conflicts_with = "sources")]
        all: bool,
        /// Record the job as scheduled (for cron and timers).
        #[arg(long)]
        scheduled: bool,
        #[arg(long)]
        json: bool,
    },
    /// List backups, foreign objects and incomplete uploads in the bucket.
    List {
        #[arg(long)]
        source: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Show one backup's manifest.
    Show {
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// Restore a backup into a new SQLite file or PostgreSQL database and diff its row counts.
    Restore(RestoreArgs),
    /// Put a proven scratch copy in place of its source (confirmed by typing the source's
    /// name); the old database or file is kept beside it.
    Promote(promote::PromoteArgs),
    /// Restore a backup into a scratch database, diff it, measure RTO/RPO, store the report.
    Drill(drill::DrillArgs),
    /// Reports for an audit.
    Report {
        #[command(subcommand)]
        what: drill::ReportWhat,
    },
    /// Re-download backups and check their SHA-256.
    Verify {
        /// A backup id, or `latest` (of --source).
        id: Option<String>,
        /// Every backup with a manifest (of --source, if given); damaged ones count as failed.
        #[arg(long, conflicts_with = "id")]
        all: bool,
        #[arg(long)]
        source: Option<String>,
        /// Also decrypt, restore into a scratch database and diff the row counts.
        #[arg(long)]
        deep: bool,
        /// A base backup of a point-in-time source instead (its id, or `latest`): the stored
        /// checksum, then every file against PostgreSQL's backup_manifest.
        #[arg(long, value_name = "ID", conflicts_with_all = ["id", "all", "deep"])]
        base: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Apply the retention policy: list every backup with keep/prune and why, then delete.
    Prune(prune::PruneArgs),
    /// Bring every store up to date: copy the backups and records each lacks, check copies
    /// never read back.
    Copy(copy::CopyArgs),
    /// Protect a backup from every prune.
    Pin {
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// Let the retention policy decide about a pinned backup again.
    Unpin {
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions { shell: clap_complete::Shell },
    /// Print the man page (roff), e.g. `lifeboat man > /usr/local/share/man/man1/lifeboat.1`.
    Man,
    /// Measure the console on a large generated catalog (for docs/performance.md).
    #[command(hide = true)]
    BenchConsole {
        #[arg(long, default_value_t = 100_000)]
        rows: usize,
        #[arg(long, default_value_t = 120)]
        width: u16,
        #[arg(long, default_value_t = 40)]
        height: u16,
    },
    /// Run the configured schedules until stopped (SIGTERM or Ctrl-C).
    Daemon,
    /// Print the upcoming scheduled runs.
    Schedule {
        /// How many runs to show.
        #[arg(long, short = 'n', default_value_t = 10)]
        count: usize,
        #[arg(long)]
        json: bool,
    },
    /// Health for monitoring: Nagios/Icinga exit codes (0 OK, 1 WARNING, 2 CRITICAL,
    /// 3 UNKNOWN) and one status line with perfdata.
    Check {
        #[arg(long)]
        source: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Write a new signing key to FILE (mode 0600) and print its public key, for `[signing]`.
    Keygen {
        /// Where to write the secret key; with --public, the key file to read.
        file: PathBuf,
        /// Print the public key of an existing key file instead.
        #[arg(long)]
        public: bool,
    },
    /// Remove what killed runs left behind: staging copies, partial restores, scratch
    /// databases, unfinished uploads. Only what provably belongs to no running job.
    Clean {
        /// Say what would be removed, remove nothing.
        #[arg(long)]
        dry_run: bool,
        #[arg(long)]
        json: bool,
    },
    /// Take a base backup of a source with [source.pitr] (pg_basebackup; WAL comes from the
    /// archive).
    Basebackup {
        /// The source (default: the only one with [source.pitr]).
        source: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Point-in-time recovery: archive and fetch WAL (archive_command, restore_command).
    Wal {
        #[command(subcommand)]
        what: wal::WalCommand,
    },
    /// Job history.
    Jobs {
        #[arg(long)]
        source: Option<String>,
        /// Show at most this many jobs.
        #[arg(long, default_value_t = 50)]
        limit: usize,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args)]
pub(crate) struct RestoreArgs {
    /// A backup id, a foreign object's key, or `latest`.
    what: Option<String>,
    /// The newest backup taken at or before this time ("2026-11-22 01:40" UTC, "-2h", ...).
    #[arg(long, conflicts_with = "what", allow_hyphen_values = true)]
    before: Option<String>,
    /// Which source, for `latest` and --before; for a foreign pg_dump file, the PostgreSQL
    /// source whose scratch server to restore on.
    #[arg(long)]
    source: Option<String>,
    /// The SQLite file to create, or the PostgreSQL database to create (default
    /// `lifeboat_restore_<id>` on the source's scratch server).
    #[arg(long, value_name = "PATH|NAME")]
    to: Option<String>,
    /// SQLite: replace an existing file (never the source: `promote` does that); repeat the
    /// --to value to confirm. PostgreSQL restores only ever create a new database.
    #[arg(long, value_name = "PATH")]
    force_target: Option<String>,
    /// Drop the PostgreSQL scratch database (or delete the SQLite file) after the diff.
    #[arg(long, conflicts_with = "force_target")]
    drop: bool,
    /// Also count the live source's tables.
    #[arg(long)]
    compare_live: bool,
    /// Also run SQLite's integrity check on the result (reads the whole database once more).
    #[arg(long)]
    integrity_check: bool,
    /// Point-in-time restore (a source with [source.pitr]) into a scratch cluster: recover to
    /// this time ("2026-11-22 10:41:07" UTC, RFC 3339, "-2h").
    #[arg(long, allow_hyphen_values = true, conflicts_with_all = ["what", "before", "lsn", "restore_point", "end_of_wal"])]
    time: Option<String>,
    /// Point-in-time restore to this WAL position (`0/3000028`).
    #[arg(long, conflicts_with_all = ["what", "before", "restore_point", "end_of_wal"])]
    lsn: Option<String>,
    /// Point-in-time restore to a restore point made with pg_create_restore_point().
    #[arg(long = "name", value_name = "RESTORE_POINT", conflicts_with_all = ["what", "before", "end_of_wal"])]
    restore_point: Option<String>,
    /// Point-in-time restore of everything the archive holds.
    #[arg(long, conflicts_with_all = ["what", "before"])]
    end_of_wal: bool,
    /// Point-in-time restore: stay paused at the target, read-only, instead of promoting.
    #[arg(long)]
    pause: bool,
    /// Point-in-time restore from this base backup (default: the newest that reaches the
    /// target).
    #[arg(long, value_name = "ID")]
    base: Option<String>,
    /// Point-in-time restore: also run amcheck on every B-tree index of the restored database.
    #[arg(long)]
    amcheck: bool,
    /// PostgreSQL, authenticated backups only: restore with the scratch server user's rights,
    /// keeping owners, grants and the database's settings (a copy meant for promotion; an
    /// untrusted extension). Without it a restore runs as a role that owns the new database
    /// only.
    #[arg(long)]
    privileged: bool,
    #[arg(long)]
    json: bool,
}

pub async fn run() -> Result<ExitCode> {
    let cli = Cli::try_parse().unwrap_or_else(|e| {
        if !e.use_stderr() {
            // --help and --version.
            e.exit()
        }
        eprintln!("{}", usage_error_line(&e));
        // Monitoring reads 2 as CRITICAL: a mistyped `check` command line is UNKNOWN (3).
        let code = if std::env::args().any(|a| a == "check") {
            3
        } else {
            2
        };
        std::process::exit(code)
    });
    init_logging(cli.verbose);
    let config_path = cli.config.clone().unwrap_or_else(Config::default_path);
    let Some(command) = cli.command else {
        let lb = open(&config_path).await?;
        crate::tui::run(lb).await?;
        return Ok(ExitCode::SUCCESS);
    };
    if matches!(command, Command::Check { .. }) {
        crate::panics_are_unknown();
    }
    // Proves the panic hook from the outside (tests/it/untrusted.rs): a panic in a task.
    // Debug builds only: a release binary has no way to be told to panic.
    if cfg!(debug_assertions) && std::env::var_os("LIFEBOAT_DEBUG_PANIC").is_some() {
        let _ = tokio::spawn(async { panic!("LIFEBOAT_DEBUG_PANIC is set") }).await;
    }
    let cancel = CancellationToken::new();
    signals::watch(cancel.clone()).wrap_err("cannot watch for stop signals")?;
    let daemon = matches!(command, Command::Daemon);
    let result = command_result(command, cli.quiet, &config_path, cancel).await;
    // A one-shot command that was asked to stop says so in its exit code, as a process
    // killed by that signal would (the daemon's stop is its normal end).
    match (signals::received(), result) {
        (Some(sig), result) if !daemon => {
            if let Err(report) = result {
                eprintln!(
                    "error: {}",
                    lifeboat::escape::term(&crate::one_line(&report))
                );
            }
            Ok(ExitCode::from((128 + sig) as u8))
        }
        (_, result) => result,
    }
}

async fn command_result(
    command: Command,
    quiet: bool,
    config_path: &std::path::Path,
    cancel: CancellationToken,
) -> Result<ExitCode> {
    let config_path = config_path.to_path_buf();
    match command {
        Command::Init { force } => init(&config_path, force),
        Command::Demo { dir, force, scale } => {
            let opts = DemoOptions {
                dir,
                force,
                scale,
                days: 120,
            };
            demo::check_dir(&opts)?;
            eprintln!("building the demo in {} ...", opts.dir.display());
            let summary = demo::create(&opts).await?;
            println!(
                "demo ready in {}: {} backups of 2 SQLite databases over 120 days ({} failed job), {} jobs",
                summary.dir.display(),
                summary.backups,
                summary.failed,
                summary.jobs
            );
            if std::io::stdout().is_terminal() && std::io::stdin().is_terminal() {
                let lb = open(&summary.config).await?;
                crate::tui::run(lb).await?;
            } else {
                println!("next: lifeboat --config {} list", summary.config.display());
                println!(
                    "  or: lifeboat --config {}    (the console)",
                    summary.config.display()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Backup {
            sources,
            all,
            scheduled,
            json,
        } => {
            let lb = open(&config_path).await?;
            let names: Vec<String> = if all {
                lb.config().sources.iter().map(|s| s.name.clone()).collect()
            } else if !sources.is_empty() {
                sources
            } else if lb.config().sources.len() == 1 {
                vec![lb.config().sources[0].name.clone()]
            } else {
                bail!("name the sources to back up, or pass --all");
            };
            if names.is_empty() {
                bail!("no sources are configured in {}", config_path.display());
            }
            for name in &names {
                lb.source(name)?;
            }
            let trigger = if scheduled {
                Trigger::Scheduled
            } else {
                Trigger::Manual
            };
            let mut failed = 0;
            let mut results = Vec::new();
            for name in names {
                // Another job on this source (the daemon, another cron line) goes first.
                let _lock = match lb.lock_source(&name) {
                    Ok(lock) => lock,
                    Err(e) => {
                        eprintln!("error: {}", output::esc(e));
                        failed += 1;
                        continue;
                    }
                };
                let progress = Arc::new(CliProgress::new(name.clone(), quiet || json));
                let (job, result) = lb
                    .backup(&name, trigger, progress.clone(), cancel.clone())
                    .await;
                progress.finish();
                if let Err(e) = &result {
                    failed += 1;
                    // The reason goes to stderr too: cron mails it, systemd logs it as an error.
                    eprintln!("error: backup of {name} failed: {}", output::esc(e));
                    if !matches!(result, Err(Error::Cancelled)) {
                        let alert = lifeboat::alert::Alert::job_failed(&job, 1);
                        let hooks = &lb.config().webhooks;
                        lifeboat::alert::notify(hooks, &alert, Default::default()).await;
                    }
                }
                if !json {
                    output::backup_line(&name, &job, result.as_ref());
                }
                results.push((job, result.ok()));
                if cancel.is_cancelled() {
                    break;
                }
            }
            if json {
                output::print_json(&output::backups_json(&results))?;
            }
            Ok(if failed == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::List { source, json } => {
            let lb = open(&config_path).await?;
            let mut catalog = lb.catalog().await.wrap_err("cannot read the catalog")?;
            if let Some(s) = &source {
                lb.source(s)?;
                catalog.backups.retain(|b| &b.source == s);
            }
            let pitr = pitr_view::load(&lb, source.as_deref()).await;
            if json {
                let mut value = output::catalog_json(&lb, &catalog);
                value["pitr"] = pitr_view::list_json(&pitr);
                output::print_json(&value)?;
            } else {
                output::catalog(&lb, &catalog, color());
                pitr_view::print_list(&pitr, color());
            }
            // Freeing 100,000 parsed manifests one by one takes longer than the exit that
            // follows; the process returns the memory at once.
            std::mem::forget(catalog);
            Ok(ExitCode::SUCCESS)
        }
        Command::Show { id, json } => {
            let lb = open(&config_path).await?;
            let catalog = lb.catalog().await.wrap_err("cannot read the catalog")?;
            let entry = match catalog.lookup(&id) {
                Err(Error::NoBackup(e)) => {
                    // Not a logical backup: perhaps a base backup of a point-in-time source.
                    let Some((status, i)) = pitr_view::find(&lb, &id).await? else {
                        return Err(Error::NoBackup(e).into());
                    };
                    let b = &status.bases[i];
                    if json {
                        output::print_json(&pitr_view::show_json(&status, b))?;
                    } else {
                        pitr_view::print_show(&status, b, lb.clock().now());
                    }
                    return Ok(ExitCode::SUCCESS);
                }
                found => found?,
            };
            if json {
                output::print_json(&output::entry_json(&lb, entry, catalog.pinned(entry)))?;
            } else {
                output::show(&lb, entry, catalog.pinned(entry));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Restore(args) => restore(&config_path, args, quiet, cancel).await,
        Command::Promote(args) => promote::run(&open(&config_path).await?, args, cancel).await,
        Command::Drill(args) => drill::drill(&open(&config_path).await?, args, quiet, cancel).await,
        Command::Report { what } => drill::report(&open(&config_path).await?, what).await,
        Command::Verify {
            id,
            all,
            source,
            deep,
            base,
            json,
        } => {
            let lb = open(&config_path).await?;
            if let Some(base) = base {
                return pitr::verify_base(&lb, source, &base, json, cancel).await;
            }
            let catalog = lb.catalog().await.wrap_err("cannot read the catalog")?;
            let entries: Vec<_> = match (id, all) {
                (Some(id), _) if id == "latest" => {
                    let selector = Selector::Latest {
                        source: source.clone(),
                    };
                    match lb.select(&catalog, &selector)? {
                        RestoreFrom::Backup(b) => vec![*b],
                        RestoreFrom::Foreign(_) => unreachable!("latest is a backup"),
                    }
                }
                (Some(id), _) => vec![catalog.lookup(&id)?.clone()],
                // Damaged backups are verified too: each is a failure to report, not a
                // backup to skip. Orphans never had a manifest and are no backups at all.
                (None, true) => catalog
                    .backups
                    .iter()
                    .filter(|b| b.state != lifeboat::catalog::BackupState::Orphan)
                    .filter(|b| source.as_ref().is_none_or(|s| &b.source == s))
                    .cloned()
                    .collect(),
                (None, false) => bail!("name a backup id, or pass --all"),
            };
            if deep {
                return drill::verify_deep(&lb, &entries, quiet, json, cancel).await;
            }
            let mut failed = 0;
            let mut results = Vec::new();
            for entry in &entries {
                let progress = Arc::new(CliProgress::new(entry.id.to_string(), quiet || json));
                let (job, result) = lb.verify(entry, progress.clone(), cancel.clone()).await;
                progress.finish();
                if result.is_err() {
                    failed += 1;
                }
                if !json {
                    output::verify_line(&lb, entry, result.as_ref().err());
                }
                results.push(job);
                if cancel.is_cancelled() {
                    break;
                }
            }
            if json {
                output::print_json(&results)?;
            } else if entries.is_empty() {
                println!("no backups to verify");
            } else if failed > 0 {
                eprintln!(
                    "error: {failed} of {} backup(s) failed verification",
                    entries.len()
                );
            }
            Ok(if failed == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Prune(args) => prune::run(&open(&config_path).await?, args, cancel).await,
        Command::Copy(args) => copy::run(&open(&config_path).await?, args, quiet, cancel).await,
        Command::Pin { id, json } => prune::pin(&open(&config_path).await?, &id, true, json).await,
        Command::Unpin { id, json } => {
            prune::pin(&open(&config_path).await?, &id, false, json).await
        }
        Command::Completions { shell } => {
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "lifeboat",
                &mut std::io::stdout(),
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Man => {
            clap_mangen::Man::new(Cli::command())
                .render(&mut std::io::stdout())
                .wrap_err("cannot write the man page")?;
            Ok(ExitCode::SUCCESS)
        }
        Command::BenchConsole {
            rows,
            width,
            height,
        } => {
            crate::tui::bench::run(rows, width, height)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Daemon => daemon::daemon(&config_path, cancel).await,
        Command::Wal { what } => wal::run(&config_path, what, cancel).await,
        Command::Basebackup { source, json } => {
            pitr::basebackup(&open(&config_path).await?, source, json, quiet, cancel).await
        }
        Command::Keygen { file, public } => keygen(&file, public),
        Command::Schedule { count, json } => daemon::schedule(&config_path, count, json),
        Command::Check { source, json } => Ok(check::run(&config_path, source, json).await),
        Command::Clean { dry_run, json } => {
            clean::run(&open(&config_path).await?, dry_run, json).await
        }
        Command::Jobs {
            source,
            limit,
            json,
        } => {
            let lb = open(&config_path).await?;
            match lb.sync_jobs().await {
                Ok(sync) => {
                    // Said once: the verdict is cached and the record not read again.
                    for u in &sync.unusable {
                        eprintln!(
                            "warning: skipped job record {}: {}",
                            output::esc(&u.key),
                            output::esc(&u.reason)
                        );
                    }
                    for (key, e) in &sync.unreadable {
                        eprintln!(
                            "warning: job record {} could not be read this time: {}",
                            output::esc(key),
                            output::esc(e)
                        );
                    }
                }
                Err(e) => eprintln!(
                    "warning: showing local history only; the bucket's job records could not be read: {}",
                    output::esc(e)
                ),
            }
            let mut jobs = lb.jobs()?;
            if let Some(s) = &source {
                jobs.retain(|j| j.source.as_ref() == Some(s));
            }
            jobs.truncate(limit);
            if json {
                output::print_json(&jobs)?;
            } else {
                output::jobs(&jobs, lb.clock().now(), color());
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn restore(
    config_path: &std::path::Path,
    args: RestoreArgs,
    quiet: bool,
    cancel: CancellationToken,
) -> Result<ExitCode> {
    let lb = open(config_path).await?;
    if let Some(target) = pitr::target_of(&args, lb.clock().now())? {
        return pitr::restore(&lb, config_path, &args, target, cancel).await;
    }
    let catalog: Catalog = lb.catalog().await.wrap_err("cannot read the catalog")?;
    let selector = match (&args.what, &args.before) {
        (_, Some(t)) => Selector::Before {
            time: when::parse_point(t, lb.clock().now())?,
            source: args.source.clone(),
        },
        (Some(w), None) if w == "latest" => Selector::Latest {
            source: args.source.clone(),
        },
        (Some(id), None) => Selector::Id(id.clone()),
        (None, None) => bail!("name a backup id, `latest`, or --before TIME"),
    };
    let from = lb.select(&catalog, &selector)?;
    // The engine the copy is loaded into, and the configured source it is restored for.
    let (engine, source) = match &from {
        RestoreFrom::Backup(b) => (
            b.manifest
                .as_ref()
                .map_or(EngineKind::Sqlite, |m| m.source.engine),
            Some(b.source.clone()),
        ),
        RestoreFrom::Foreign(f) => {
            let named = args
                .source
                .as_deref()
                .and_then(|s| lb.config().source(s))
                .filter(|s| lifeboat::engine::for_source(s).loads(f.format));
            match named {
                Some(s) => (s.engine, Some(s.name.clone())),
                None if f.format.content == Content::PgCustom => bail!(
                    "{} is a pg_dump archive: name the PostgreSQL source whose server to restore on with --source",
                    f.meta.key
                ),
                None => (EngineKind::Sqlite, None),
            }
        }
    };
    let id = match &from {
        RestoreFrom::Backup(b) => b.id.to_string(),
        RestoreFrom::Foreign(_) => format!("{:08x}", fastrand::u32(..)),
    };
    let to = match (&args.to, engine) {
        (Some(to), _) => Some(to.as_str()),
        // Not into the scratch directory unasked: a SQLite copy is a file someone must find.
        (None, EngineKind::Sqlite) => bail!("name the SQLite file to create with --to PATH"),
        (None, _) => None,
    };
    let target = lb.scratch_target(engine, source.as_deref().unwrap_or_default(), to, &id)?;
    let target_name = target.copy_name();
    let force_target = match &args.force_target {
        None => false,
        Some(p) if engine == EngineKind::Postgres => bail!(
            "--force-target {p}: a PostgreSQL restore never loads an existing database; restore into a new database, then `lifeboat promote NEW` puts the proven copy in place of the source and keeps the old one"
        ),
        Some(p) if p == &target_name => true,
        Some(p) => {
            bail!("--force-target {p} does not repeat --to {target_name}; nothing was touched")
        }
    };
    let live = if args.compare_live {
        let RestoreFrom::Backup(b) = &from else {
            bail!("--compare-live needs a lifeboat backup; a foreign object has no known source");
        };
        Some(lb.live_source(&b.source)?)
    } else {
        None
    };
    let opts = RestoreOptions {
        target,
        for_source: match &from {
            RestoreFrom::Foreign(_) => source.clone(),
            RestoreFrom::Backup(_) => None,
        },
        force_target,
        live,
        integrity_check: args.integrity_check,
        drill: false,
        staging: lb.staging(),
        privileged: args.privileged,
    };
    // A foreign object's key names the restore: it comes from the bucket.
    let progress = Arc::new(CliProgress::new(
        output::esc(from.label()),
        quiet || args.json,
    ));
    let (job, result) = lb.restore(from, opts, progress.clone(), cancel).await;
    progress.finish();
    let report = match result {
        Ok(report) => report,
        Err(Error::RowCountMismatch(report)) => *report,
        Err(e) => return Err(e.into()),
    };
    if args.json {
        output::print_json(&output::restore_json(&job, &report))?;
    } else {
        output::restore_report(&report, &job, color());
    }
    if args.drop {
        lb.drop_restored(&report.target, report.created)
            .await
            .wrap_err("the restore ran, but its scratch database could not be dropped")?;
        if !args.json {
            println!("dropped {}", output::esc(&report.target));
        }
    }
    Ok(if report.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Writes a new secret signing key (never over an existing file) and prints its public key.
fn keygen(file: &std::path::Path, public: bool) -> Result<ExitCode> {
    use lifeboat::signing::Signer;
    let signer = if public {
        let text = std::fs::read_to_string(file)
            .wrap_err_with(|| format!("cannot read {}", file.display()))?;
        Signer::parse(&text).ok_or_else(|| {
            color_eyre::eyre::eyre!("{} does not hold a lifeboat signing key", file.display())
        })?
    } else {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let (signer, text) = Signer::generate()?;
        let mut out = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(file)
            .wrap_err_with(|| {
                format!("cannot create {} (it must not exist yet)", file.display())
            })?;
        out.write_all(text.as_bytes())
            .and_then(|()| out.sync_all())
            .wrap_err_with(|| format!("cannot write {}", file.display()))?;
        eprintln!(
            "wrote the secret key to {}: set [signing] key_file to it on hosts that back up",
            file.display()
        );
        signer
    };
    println!("{}", signer.public());
    Ok(ExitCode::SUCCESS)
}

pub(crate) async fn open(config_path: &std::path::Path) -> Result<Lifeboat> {
    let config = Config::load(config_path)?;
    Ok(Lifeboat::open(config).await?)
}

fn init(path: &std::path::Path, force: bool) -> Result<ExitCode> {
    if path.exists() && !force {
        bail!(
            "{} already exists; pass --force to replace it",
            path.display()
        );
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .wrap_err_with(|| format!("cannot create {}", dir.display()))?;
    }
    std::fs::write(path, lifeboat::config::template())
        .wrap_err_with(|| format!("cannot write {}", path.display()))?;
    println!(
        "wrote {}: add your databases under [[source]], then run `lifeboat backup --all`",
        path.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// clap's usage error as the one `error:` line the docs promise: its message and tips,
/// without the usage block.
fn usage_error_line(e: &clap::Error) -> String {
    let text = e.to_string();
    let body = text.split("\nUsage:").next().unwrap_or(&text);
    let parts: Vec<&str> = body
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("For more information"))
        .collect();
    let line = parts.join("; ").replace(":; ", ": ");
    let line = line.strip_prefix("error: ").unwrap_or(&line);
    format!("error: {line} (see --help)")
}

fn color() -> bool {
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("LIFEBOAT_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}
