//! A TCP proxy in front of the in-process S3 server whose fault can be switched while a job
//! runs: an endpoint that freezes, dies, cuts or stalls its answers, or receives a damaged
//! upload. Requests are framed by Content-Length (the store sends no chunked bodies).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    Pass,
    /// Nothing is forwarded any more, either way; connections stay open (a server stopped
    /// with SIGSTOP, a dead route).
    Freeze,
    /// The server is gone: open connections are reset, new ones closed at once.
    Down,
    /// An answer is cut (the connection reset) once a connection has carried this many
    /// bytes back to the client; counted against the budget.
    CutAnswers {
        after: usize,
    },
    /// An answer stops (the connection stays open) after this many bytes; counted.
    StallAnswers {
        after: usize,
    },
    /// One byte in the body of an upload (a PUT with a body) is changed; counted.
    CorruptUploads,
    /// A single-request upload (a PUT that is not a multipart part) is answered `200 OK` by
    /// the proxy and never reaches the server: a store that acknowledges what it then loses.
    AckWithoutStoring,
    /// Uploads go through at this many bytes a second: slow, never stalled.
    Throttle {
        per_second: usize,
    },
}

pub struct FaultProxy {
    pub endpoint: String,
    fault: watch::Sender<Fault>,
    /// How many counted faults may still be injected.
    budget: Arc<AtomicUsize>,
    pub injected: Arc<AtomicUsize>,
    pub connections: Arc<AtomicUsize>,
    /// GET requests that asked for a byte range (resumed downloads).
    pub ranged_gets: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
        // Unfreeze whatever is still held, so its tasks end.
        let _ = self.fault.send(Fault::Down);
    }
}

#[derive(Clone)]
struct Shared {
    fault: watch::Receiver<Fault>,
    budget: Arc<AtomicUsize>,
    injected: Arc<AtomicUsize>,
    ranged_gets: Arc<AtomicUsize>,
}

impl Shared {
    fn now(&self) -> Fault {
        *self.fault.borrow()
    }

    /// Takes one unit of the fault budget.
    fn spend(&self) -> bool {
        let taken = self
            .budget
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if taken {
            self.injected.fetch_add(1, Ordering::SeqCst);
        }
        taken
    }
}

impl FaultProxy {
    pub async fn start(upstream: &str) -> FaultProxy {
        let upstream: SocketAddr = upstream.trim_start_matches("http://").parse().unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let (fault, rx) = watch::channel(Fault::Pass);
        let shared = Shared {
            fault: rx,
            budget: Arc::new(AtomicUsize::new(0)),
            injected: Arc::new(AtomicUsize::new(0)),
            ranged_gets: Arc::new(AtomicUsize::new(0)),
        };
        let connections = Arc::new(AtomicUsize::new(0));
        let (s, c) = (shared.clone(), connections.clone());
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                c.fetch_add(1, Ordering::SeqCst);
                let s = s.clone();
                tokio::spawn(async move {
                    let _ = serve(client, upstream, s).await;
                });
            }
        });
        FaultProxy {
            endpoint,
            fault,
            budget: shared.budget,
            injected: shared.injected,
            connections,
            ranged_gets: shared.ranged_gets,
            task,
        }
    }

    /// Switches the fault; counted faults get `budget` injections, then pass.
    pub fn set(&self, fault: Fault, budget: usize) {
        self.budget.store(budget, Ordering::SeqCst);
        let _ = self.fault.send(fault);
    }

    pub fn injected(&self) -> usize {
        self.injected.load(Ordering::SeqCst)
    }
}

async fn serve(client: TcpStream, upstream: SocketAddr, s: Shared) -> std::io::Result<()> {
    if s.now() == Fault::Down {
        return Ok(());
    }
    // Closing then resets the connection instead of ending it politely.
    client.set_zero_linger()?;
    let server = TcpStream::connect(upstream).await?;
    let (cr, cw) = client.into_split();
    let (sr, sw) = server.into_split();
    // Answers the proxy makes up itself go back the server's way, in order.
    let (inject, injected) = tokio::sync::mpsc::channel(1);
    // Bytes of the current answer: reset when the next request goes up.
    let carried = Arc::new(AtomicUsize::new(0));
    let down = tokio::spawn(answers(sr, cw, injected, carried.clone(), s.clone()));
    let up = requests(cr, sw, inject, carried, s).await;
    down.abort();
    up
}

/// Waits while frozen; false once the endpoint is down.
async fn usable(s: &mut Shared) -> bool {
    loop {
        match s.now() {
            Fault::Down => return false,
            Fault::Freeze => {
                if s.fault.changed().await.is_err() {
                    return false;
                }
            }
            _ => return true,
        }
    }
}

/// Reads from `r`, giving up when the endpoint goes down meanwhile.
async fn read(r: &mut OwnedReadHalf, buf: &mut [u8], s: &mut Shared) -> std::io::Result<usize> {
    loop {
        tokio::select! {
            n = r.read(buf) => return n,
            changed = s.fault.changed() => {
                if changed.is_err() || s.now() == Fault::Down {
                    return Err(std::io::Error::other("down"));
                }
            }
        }
    }
}

/// Server to client: forwarded as it comes, counting bytes per connection.
async fn answers(
    mut sr: OwnedReadHalf,
    mut cw: OwnedWriteHalf,
    mut injected: tokio::sync::mpsc::Receiver<Vec<u8>>,
    answer_bytes: Arc<AtomicUsize>,
    mut s: Shared,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = tokio::select! {
            n = read(&mut sr, &mut buf, &mut s) => n,
            Some(answer) = injected.recv() => {
                if cw.write_all(&answer).await.is_err() {
                    return;
                }
                continue;
            }
        };
        let Ok(n) = n else {
            return;
        };
        if n == 0 || !usable(&mut s).await {
            return;
        }
        let chunk = &buf[..n];
        let carried = answer_bytes.fetch_add(n, Ordering::SeqCst);
        match s.now() {
            Fault::CutAnswers { after } | Fault::StallAnswers { after }
                if carried + n > after && s.spend() =>
            {
                let keep = after.saturating_sub(carried);
                let _ = cw.write_all(&chunk[..keep]).await;
                if let Fault::StallAnswers { .. } = s.now() {
                    // Open and silent until the client gives up (its side ends this task).
                    std::future::pending::<()>().await;
                }
                return;
            }
            _ => {}
        }
        if cw.write_all(chunk).await.is_err() {
            return;
        }
    }
}

/// Client to server, request by request.
async fn requests(
    mut cr: OwnedReadHalf,
    mut sw: OwnedWriteHalf,
    inject: tokio::sync::mpsc::Sender<Vec<u8>>,
    answer_bytes: Arc<AtomicUsize>,
    mut s: Shared,
) -> std::io::Result<()> {
    let mut pending: Vec<u8> = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let head_end = loop {
            if let Some(i) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let n = read(&mut cr, &mut buf, &mut s).await?;
            if n == 0 {
                return Ok(());
            }
            pending.extend_from_slice(&buf[..n]);
        };
        let head = String::from_utf8_lossy(&pending[..head_end]).to_ascii_lowercase();
        answer_bytes.store(0, Ordering::SeqCst);
        let body_len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        if head.starts_with("get ") && head.lines().any(|l| l.starts_with("range:")) {
            s.ranged_gets.fetch_add(1, Ordering::SeqCst);
        }
        let corrupt_at = (head.starts_with("put ")
            && body_len >= 128
            && s.now() == Fault::CorruptUploads
            && s.spend())
        .then_some(head_end + body_len / 2);
        let total = head_end + body_len;
        let single_put = head.starts_with("put ")
            && !head
                .lines()
                .next()
                .unwrap_or_default()
                .contains("uploadid=");
        if single_put && s.now() == Fault::AckWithoutStoring && s.spend() {
            let mut left = total;
            loop {
                let n = pending.len().min(left);
                pending.drain(..n);
                left -= n;
                if left == 0 {
                    break;
                }
                let n = read(&mut cr, &mut buf, &mut s).await?;
                if n == 0 {
                    return Ok(());
                }
                pending.extend_from_slice(&buf[..n]);
            }
            let etag = format!("\"{:032x}\"", fastrand::u128(..));
            let answer = format!("HTTP/1.1 200 OK\r\nETag: {etag}\r\nContent-Length: 0\r\n\r\n");
            if inject.send(answer.into_bytes()).await.is_err() {
                return Ok(());
            }
            continue;
        }
        let mut sent = 0usize;
        while sent < total {
            if pending.is_empty() {
                let n = read(&mut cr, &mut buf, &mut s).await?;
                if n == 0 {
                    return Ok(());
                }
                pending.extend_from_slice(&buf[..n]);
            }
            if !usable(&mut s).await {
                return Err(std::io::Error::other("down"));
            }
            let mut n = pending.len().min(total - sent);
            if let Fault::Throttle { per_second } = s.now() {
                n = n.min(per_second / 20);
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            if let Some(at) = corrupt_at
                && (sent..sent + n).contains(&at)
            {
                pending[at - sent] ^= 0x55;
            }
            sw.write_all(&pending[..n]).await?;
            pending.drain(..n);
            sent += n;
        }
    }
}
