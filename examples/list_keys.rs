//! Lists every key of an S3 bucket through lifeboat's own S3 client and prints how many, for
//! the listing benchmark's baseline (`scripts/bench-list`): the time to list the keys alone.
//!
//! `cargo run --release --example list_keys -- ENDPOINT BUCKET` (credentials from the
//! environment, as for lifeboat).

use lifeboat::storage::{ObjectStoreExt, S3Options, S3Store};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: list_keys ENDPOINT BUCKET";
    let endpoint = args.next().ok_or(usage)?;
    let bucket = args.next().ok_or(usage)?;
    let mut options = S3Options::new(bucket);
    options.endpoint = Some(endpoint);
    options.region = Some("us-east-1".into());
    options.force_path_style = true;
    let store = S3Store::connect(options).await;
    let keys = store.list_all("").await?;
    println!("{} keys", keys.len());
    Ok(())
}
