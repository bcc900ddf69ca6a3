//! The two stores behave alike: listing pages, streams, deletes, key validation.

use std::sync::Arc;

use bytes::Bytes;
use futures_util::{StreamExt, stream};
use lifeboat::storage::{
    ByteStream, LocalStore, ObjectKey, ObjectStore, ObjectStoreExt, StoreError,
};

use crate::common::S3Server;

async fn paginates(store: Arc<dyn ObjectStore>) {
    let keys: Vec<ObjectKey> = (0..2500)
        .map(|i| ObjectKey::new(format!("many/k{i:05}")).unwrap())
        .collect();
    stream::iter(keys.iter().map(|k| {
        let store = store.clone();
        async move { store.put_bytes(k, Bytes::from_static(b"x")).await.unwrap() }
    }))
    .buffer_unordered(32)
    .collect::<Vec<_>>()
    .await;
    store
        .put_bytes(
            &ObjectKey::new("other/a").unwrap(),
            Bytes::from_static(b"y"),
        )
        .await
        .unwrap();

    let mut pages = 0;
    let mut seen = Vec::new();
    let mut token = None;
    loop {
        let page = store.list_page("many/", token).await.unwrap();
        assert!(page.objects.len() <= 1000, "a page holds at most 1000 keys");
        pages += 1;
        seen.extend(page.objects.into_iter().map(|o| o.key));
        match page.next {
            Some(t) => token = Some(t),
            None => break,
        }
    }
    assert!(pages >= 3, "2,500 keys come in several pages, got {pages}");
    let expected: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
    assert_eq!(seen, expected, "every key once, in order, prefix respected");

    // A listing can start after any key (one that exists or not) and go on by token.
    for (after, from) in [("many/k01499", 1500), ("many/k01499x", 1500), ("many/", 0)] {
        let mut page = store.list_page_after("many/", after).await.unwrap();
        let mut seen = Vec::new();
        loop {
            seen.extend(page.objects.into_iter().map(|o| o.key));
            match page.next {
                Some(t) => page = store.list_page("many/", Some(t)).await.unwrap(),
                None => break,
            }
        }
        assert_eq!(seen, expected[from..], "after {after}");
    }
    let past = store.list_page_after("", "many/\u{10FFFF}").await.unwrap();
    let past: Vec<String> = past.objects.into_iter().map(|o| o.key).collect();
    assert_eq!(past, ["other/a"], "past a whole prefix");

    store.delete_many(&keys).await.unwrap();
    assert!(store.list_all("many/").await.unwrap().is_empty());
    assert_eq!(store.list_all("").await.unwrap().len(), 1);
}

async fn streams_and_heads(store: Arc<dyn ObjectStore>) {
    let key = ObjectKey::new("dir/obj.bin").unwrap();
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 253) as u8).collect();
    let chunks: Vec<std::io::Result<Bytes>> = data
        .chunks(100_000)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    let body: ByteStream = Box::pin(stream::iter(chunks));
    let out = store.put(&key, body).await.unwrap();
    assert_eq!(out.size, data.len() as u64);
    let head = store.head(&key).await.unwrap().unwrap();
    assert_eq!(head.size, data.len() as u64);
    assert!(
        store
            .head(&ObjectKey::new("dir/missing").unwrap())
            .await
            .unwrap()
            .is_none()
    );
    let got = store.get_bounded(&key, u64::MAX).await.unwrap();
    assert_eq!(got, data);
    assert_eq!(&store.get_prefix(&key, 10).await.unwrap()[..], &data[..10]);
    assert!(matches!(
        store.get(&ObjectKey::new("dir/missing").unwrap()).await,
        Err(StoreError::NotFound(_))
    ));
    // An upload whose body fails leaves nothing behind.
    let failing: ByteStream = Box::pin(stream::iter(vec![
        Ok(Bytes::from(vec![1u8; 1000])),
        Err(std::io::Error::other("source died")),
    ]));
    let bad = ObjectKey::new("dir/never.bin").unwrap();
    assert!(store.put(&bad, failing).await.is_err());
    assert!(store.head(&bad).await.unwrap().is_none());
    assert!(store.list_incomplete("").await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn local_store_paginates_and_streams() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn ObjectStore> = Arc::new(LocalStore::open(dir.path()).unwrap());
    paginates(store.clone()).await;
    streams_and_heads(store).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn s3_store_paginates_and_streams() {
    let server = S3Server::start().await;
    let store = server.store("team/prod").await;
    paginates(store.clone()).await;
    streams_and_heads(store).await;
    // The prefix is honoured on the server side.
    assert!(server.object_path("team/prod/dir/obj.bin").exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn s3_multipart_upload_is_streamed_in_parts() {
    let server = S3Server::start().await;
    let store = server.store("").await;
    let key = ObjectKey::new("big/object").unwrap();
    // 17 MiB in 64 KiB chunks: four parts of 5 MiB at most.
    let chunks = (0..17 * 16).map(|i| Ok(Bytes::from(vec![(i % 256) as u8; 64 * 1024])));
    let out = store
        .put(&key, Box::pin(stream::iter(chunks)))
        .await
        .unwrap();
    assert_eq!(out.parts, 4);
    assert_eq!(out.size, 17 * 1024 * 1024);
    let got = store.get_bounded(&key, u64::MAX).await.unwrap();
    assert_eq!(got.len(), 17 * 1024 * 1024);
    assert!(
        got[5 * 1024 * 1024..5 * 1024 * 1024 + 64 * 1024]
            .iter()
            .all(|&b| b == 80)
    );

    // A body that fails after two parts: the upload is aborted and no object appears.
    let chunks = (0..12 * 16).map(|i| {
        Ok(Bytes::from(vec![1u8; 64 * 1024])).and_then(|b| {
            if i == 11 * 16 {
                Err(std::io::Error::other("dump died"))
            } else {
                Ok(b)
            }
        })
    });
    let key = ObjectKey::new("big/failed").unwrap();
    let err = store
        .put(&key, Box::pin(stream::iter(chunks)))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("dump died"), "{err}");
    assert!(store.head(&key).await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn keys_that_escape_are_refused() {
    for bad in ["../etc/passwd", "a/../../b", "/abs", "a\0b", "a//b", ""] {
        assert!(ObjectKey::new(bad).is_err(), "{bad:?}");
    }
    // A manifest cannot point outside its directory either.
    let manifest = include_str!("manifest_escape.json");
    let err = lifeboat::manifest::Manifest::parse(
        "app/20261122T020000Z-7f3a/manifest.json",
        manifest.as_bytes(),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("not allowed"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn s3_errors_are_one_clear_line() {
    let server = S3Server::start().await;
    let mut opts = server.options("");
    opts.bucket = "no-such-bucket".into();
    let store = lifeboat::storage::S3Store::connect(opts).await;
    let err = store.list_page("", None).await.unwrap_err().to_string();
    assert!(
        err.contains("bucket no-such-bucket does not exist"),
        "{err}"
    );

    let mut opts = server.options("");
    opts.credentials = Some(aws_sdk_s3::config::Credentials::new(
        "lifeboat-test-key",
        "wrong",
        None,
        None,
        "t",
    ));
    let err = lifeboat::storage::S3Store::connect(opts)
        .await
        .list_page("", None)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("access denied"), "{err}");
    assert!(!err.contains('\n'));

    let mut opts = server.options("");
    opts.endpoint = Some("http://127.0.0.1:9".into());
    let err = lifeboat::storage::S3Store::connect(opts)
        .await
        .list_page("", None)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("cannot reach http://127.0.0.1:9"), "{err}");
}
