//! An S3 protocol server over a directory (s3s-fs), for benchmarks that need an S3 endpoint
//! outside the measured process: `cargo run --release --example s3_server -- DIR PORT`.
//! Credentials: access key `bench`, secret `bench-secret`; bucket: every directory in DIR.

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use s3s::auth::SimpleAuth;
use s3s::service::S3ServiceBuilder;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let dir = args.next().ok_or("usage: s3_server DIR PORT")?;
    let port: u16 = args.next().ok_or("usage: s3_server DIR PORT")?.parse()?;
    let fs = s3s_fs::FileSystem::new(&dir).map_err(|e| format!("{dir}: {e:?}"))?;
    let mut builder = S3ServiceBuilder::new(fs);
    builder.set_auth(SimpleAuth::from_single("bench", "bench-secret"));
    let service = builder.build();
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    println!("listening on http://{}", listener.local_addr()?);
    loop {
        let (socket, _) = listener.accept().await?;
        let service = service.clone();
        tokio::spawn(async move {
            let _ = ConnBuilder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(socket), service)
                .await;
        });
    }
}
