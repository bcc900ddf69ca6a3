//! `lifeboat clean`: removes what killed runs left, and says what it removed.

use std::process::ExitCode;

use color_eyre::eyre::Result;
use lifeboat::Lifeboat;

pub async fn run(lb: &Lifeboat, dry_run: bool, json: bool) -> Result<ExitCode> {
    let swept = lb.clean(dry_run).await?;
    let failed = swept.iter().filter(|s| s.error.is_some()).count();
    if json {
        super::output::print_json(&serde_json::json!({
            "dry_run": dry_run,
            "items": swept,
        }))?;
    } else if swept.is_empty() {
        println!("nothing to clean: no run left anything behind");
    } else {
        for s in &swept {
            let by = s
                .job_id
                .as_ref()
                .map(|j| format!(" (left by job {j})"))
                .unwrap_or_default();
            match (&s.error, dry_run) {
                (None, true) => println!("would remove {}{by}", s.what),
                (None, false) => println!("removed {}{by}", s.what),
                (Some(e), _) => println!("kept {}{by}: {e}", s.what),
            }
        }
    }
    if failed > 0 {
        eprintln!("error: {failed} item(s) could not be removed");
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}
