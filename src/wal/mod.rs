//! Continuous WAL archiving for point-in-time recovery: files pushed by `archive_command`,
//! fetched by `restore_command`, and the chain they form (see docs/postgres.md).

pub mod archive;
pub mod chain;
pub mod names;
pub mod prefetch;
pub mod stream;

use std::sync::Arc;

use crate::config::{Config, SourceConfig};
use crate::error::{Error, Result};
use crate::storage::ObjectStore;

/// The source a WAL command is for: the one named, else the only one with `[source.pitr]`.
pub fn pitr_source<'a>(config: &'a Config, name: Option<&str>) -> Result<&'a SourceConfig> {
    let with_pitr: Vec<&SourceConfig> =
        config.sources.iter().filter(|s| s.pitr.is_some()).collect();
    let known = || {
        with_pitr
            .iter()
            .map(|s| s.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    match name {
        Some(name) => {
            let source = config
                .sources
                .iter()
                .find(|s| s.name == name)
                .ok_or_else(|| Error::UnknownSource {
                    name: name.to_owned(),
                    known: known(),
                })?;
            if source.pitr.is_none() {
                return Err(Error::Invalid(format!(
                    "source {name} has no [source.pitr] table: add one to archive its WAL (docs/postgres.md)"
                )));
            }
            Ok(source)
        }
        None => match with_pitr.as_slice() {
            [one] => Ok(one),
            [] => Err(Error::Invalid(
                "no source has a [source.pitr] table: add one to archive WAL (docs/postgres.md)"
                    .into(),
            )),
            _ => Err(Error::Invalid(format!(
                "several sources archive WAL ({}); name one with --source",
                known()
            ))),
        },
    }
}

/// The store a source's WAL and base backups go to: the first of its `stores`, else the
/// default store. Opened alone, without the state database, so `archive_command` and
/// `restore_command` running as the server's OS user need only the config and the store.
pub async fn open_source_store(
    config: &Config,
    source: &SourceConfig,
) -> Result<Arc<dyn ObjectStore>> {
    let wanted = source.stores.as_ref().and_then(|s| s.first());
    let store = match wanted {
        Some(name) => config
            .stores
            .iter()
            .find(|s| &s.name == name)
            .ok_or_else(|| Error::Invalid(format!("source {}: no store {name:?}", source.name)))?,
        None => &config.stores[0],
    };
    Ok(crate::stores::open(store).await?.store)
}
