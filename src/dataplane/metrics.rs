//! The metrics listener: `GET /metrics` over HTTP/1.1 (hyper), answered
//! with the exposition [`crate::metrics::render`] makes of a snapshot the
//! event loop takes. Thin: it parses nothing itself, and it is bounded (at
//! most [`MAX_CONNECTIONS`] connections, [`HEADER_TIMEOUT`] to send the
//! request head, [`CONNECTION_TIMEOUT`] per connection, requests of at most
//! [`MAX_HEAD`] bytes), so a client that connects and stalls costs a task
//! and a socket for seconds, never the event loop.
//!
//! Who reaches it: `metrics.listen` (default off, `127.0.0.1:9586` in the
//! seed config); the firewall decides the rest (the WAN is default-deny).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, ACCEPT, ALLOW, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, Semaphore};
use tokio::task::JoinHandle;

use crate::metrics::Format;

/// Connections served at once; more are closed at once.
pub const MAX_CONNECTIONS: usize = 8;
/// Time a client has to send its request head.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest a connection stays open, keep-alive included.
pub const CONNECTION_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest a scrape waits for the event loop's snapshot.
pub const SNAPSHOT_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest request head read (hyper's buffer limit).
pub const MAX_HEAD: usize = 16 * 1024;

/// A scrape, sent to the event loop: render in `format` and answer.
#[derive(Debug)]
pub struct Scrape {
    /// The format the client asked for.
    pub format: Format,
    /// Where the rendered text goes.
    pub reply: oneshot::Sender<String>,
}

/// Why the listener could not be started.
#[derive(Debug, thiserror::Error)]
#[error("metrics.listen {addr}: cannot listen: {source}")]
pub struct ListenError {
    /// The address.
    pub addr: SocketAddr,
    /// The error.
    pub source: std::io::Error,
}

/// The running listener (on `metrics.listen`) and the channel its scrapes
/// take to the event loop. Dropping it stops the listener.
pub struct MetricsShell {
    tx: mpsc::Sender<Scrape>,
    listen: Option<SocketAddr>,
    task: Option<JoinHandle<()>>,
}

impl MetricsShell {
    /// Starts listening on `listen` (nothing when `None`); scrapes arrive
    /// on `tx`. A bind failure is an error: the daemon does not start.
    pub fn start(
        listen: Option<SocketAddr>,
        tx: mpsc::Sender<Scrape>,
    ) -> Result<MetricsShell, ListenError> {
        let task = match listen {
            Some(addr) => {
                let l = bind(addr)?;
                tracing::info!(%addr, "metrics: serving GET /metrics");
                Some(tokio::spawn(serve(l, tx.clone())))
            }
            None => None,
        };
        Ok(MetricsShell { tx, listen, task })
    }

    /// The address listened on.
    pub fn listen(&self) -> Option<SocketAddr> {
        self.listen
    }

    /// Applies a reload's `metrics.listen`: unchanged, nothing happens;
    /// otherwise the old listener is closed and, once it is gone, the new
    /// one bound (a failure is logged; the rest of the reload stands).
    pub fn configure(&mut self, listen: Option<SocketAddr>) {
        if listen == self.listen {
            return;
        }
        let old = self.task.take();
        if let Some(h) = &old {
            h.abort();
        }
        tracing::info!(from = ?self.listen, to = ?listen, "metrics: listener changed");
        self.listen = listen;
        let tx = self.tx.clone();
        self.task = Some(tokio::spawn(async move {
            // The aborted task drops its socket when it ends: wait for
            // that, so that the same port can be bound again.
            if let Some(h) = old {
                let _ = h.await;
            }
            let Some(addr) = listen else {
                return;
            };
            match bind(addr) {
                Ok(l) => {
                    tracing::info!(%addr, "metrics: serving GET /metrics");
                    serve(l, tx).await
                }
                Err(e) => tracing::error!("{e}"),
            }
        }));
    }
}

impl Drop for MetricsShell {
    fn drop(&mut self) {
        if let Some(h) = self.task.take() {
            h.abort();
        }
    }
}

/// Binds `addr` (non-blocking, registered with tokio).
fn bind(addr: SocketAddr) -> Result<TcpListener, ListenError> {
    let err = |source| ListenError { addr, source };
    let l = std::net::TcpListener::bind(addr).map_err(err)?;
    l.set_nonblocking(true).map_err(err)?;
    TcpListener::from_std(l).map_err(err)
}

/// Accepts connections, at most [`MAX_CONNECTIONS`] at a time.
async fn serve(listener: TcpListener, tx: mpsc::Sender<Scrape>) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!(error = %e, "metrics: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            tracing::debug!(%peer, "metrics: too many connections, closed");
            continue;
        };
        let tx = tx.clone();
        tokio::spawn(async move {
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .max_buf_size(MAX_HEAD)
                .serve_connection(
                    TokioIo::new(stream),
                    hyper::service::service_fn(move |req| answer(req, tx.clone())),
                );
            match tokio::time::timeout(CONNECTION_TIMEOUT, conn).await {
                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "metrics: connection"),
                Err(_) => tracing::debug!(%peer, "metrics: connection timed out"),
                Ok(Ok(())) => {}
            }
            drop(permit);
        });
    }
}

/// Answers one request: `GET` (or `HEAD`) `/metrics`, else 404 or 405.
async fn answer(
    req: Request<Incoming>,
    tx: mpsc::Sender<Scrape>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    if req.uri().path() != "/metrics" {
        return Ok(plain(StatusCode::NOT_FOUND, "only /metrics is served\n"));
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut r = plain(StatusCode::METHOD_NOT_ALLOWED, "GET /metrics only\n");
        r.headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return Ok(r);
    }
    let format = Format::from_accept(req.headers().get(ACCEPT).and_then(|v| v.to_str().ok()));
    let (reply, rx) = oneshot::channel();
    if tx.send(Scrape { format, reply }).await.is_err() {
        return Ok(plain(StatusCode::SERVICE_UNAVAILABLE, "shutting down\n"));
    }
    let body = match tokio::time::timeout(SNAPSHOT_TIMEOUT, rx).await {
        Ok(Ok(body)) => body,
        _ => return Ok(plain(StatusCode::SERVICE_UNAVAILABLE, "no snapshot\n")),
    };
    let mut r = Response::new(Full::new(Bytes::from(body)));
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static(format.content_type()),
    );
    Ok(r)
}

fn plain(status: StatusCode, text: &'static str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    /// One request over a plain socket; the whole answer.
    fn exchange(addr: SocketAddr, request: &str) -> String {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(request.as_bytes()).unwrap();
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out
    }

    /// A current-thread runtime (the daemon's kind) driven by a thread of
    /// its own while the test thread does blocking I/O.
    struct Rt {
        handle: tokio::runtime::Handle,
        stop: Option<oneshot::Sender<()>>,
        thread: Option<std::thread::JoinHandle<()>>,
    }

    impl Drop for Rt {
        fn drop(&mut self) {
            drop(self.stop.take());
            if let Some(t) = self.thread.take() {
                let _ = t.join();
            }
        }
    }

    fn runtime() -> Rt {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let handle = rt.handle().clone();
        let (stop, stopped) = oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            rt.block_on(async {
                let _ = stopped.await;
            })
        });
        Rt {
            handle,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// A listener on a free loopback port whose "event loop" answers every
    /// scrape with the format's name.
    fn start(rt: &Rt) -> (MetricsShell, SocketAddr) {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let (tx, mut rx) = mpsc::channel::<Scrape>(4);
        let _ctx = rt.handle.enter();
        tokio::spawn(async move {
            while let Some(s) = rx.recv().await {
                let _ = s.reply.send(format!("{:?}\n", s.format));
            }
        });
        (MetricsShell::start(Some(port), tx).unwrap(), port)
    }

    trait EnterAnd {
        fn enter_and(&self, f: impl FnOnce());
    }

    impl EnterAnd for tokio::runtime::Handle {
        fn enter_and(&self, f: impl FnOnce()) {
            let _ctx = self.enter();
            f()
        }
    }

    #[test]
    fn get_metrics_only() {
        let rt = runtime();
        let (_shell, addr) = start(&rt);
        let ok = exchange(
            addr,
            "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        );
        assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
        assert!(ok.contains("text/plain; version=0.0.4"), "{ok}");
        assert!(ok.ends_with("Prometheus\n"), "{ok}");
        let om = exchange(
            addr,
            "GET /metrics HTTP/1.1\r\nHost: x\r\nAccept: application/openmetrics-text;version=1.0.0\r\nConnection: close\r\n\r\n",
        );
        assert!(om.contains("application/openmetrics-text"), "{om}");
        assert!(om.ends_with("OpenMetrics\n"), "{om}");
        let nf = exchange(
            addr,
            "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        );
        assert!(nf.starts_with("HTTP/1.1 404"), "{nf}");
        let post = exchange(
            addr,
            "POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        );
        assert!(post.starts_with("HTTP/1.1 405"), "{post}");
        assert!(
            post.to_ascii_lowercase().contains("allow: get, head"),
            "{post}"
        );
        let junk = exchange(addr, "\x16\x03\x01garbage\r\n\r\n");
        assert!(
            junk.is_empty() || junk.starts_with("HTTP/1.1 400"),
            "{junk}"
        );
    }

    #[test]
    fn a_stalled_client_does_not_hold_the_listener() {
        let rt = runtime();
        let (_shell, addr) = start(&rt);
        // More silent connections than slots: they are closed (at once,
        // beyond the limit; after the header timeout, within it), and a
        // scrape still gets through afterwards.
        let silent: Vec<_> = (0..MAX_CONNECTIONS + 4)
            .map(|_| std::net::TcpStream::connect(addr).unwrap())
            .collect();
        let t0 = std::time::Instant::now();
        for mut s in silent {
            s.set_read_timeout(Some(HEADER_TIMEOUT * 3)).unwrap();
            let mut buf = Vec::new();
            let _ = s.read_to_end(&mut buf);
        }
        assert!(
            t0.elapsed() < HEADER_TIMEOUT * 3,
            "silent connections were kept {:?}",
            t0.elapsed()
        );
        let ok = exchange(
            addr,
            "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        );
        assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
    }

    #[test]
    fn a_reload_moves_the_listener() {
        let rt = runtime();
        let (mut shell, addr) = start(&rt);
        let other = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        rt.handle.enter_and(|| shell.configure(Some(other)));
        let moved = (0..100).any(|_| {
            std::thread::sleep(Duration::from_millis(50));
            std::net::TcpStream::connect(other).is_ok()
        });
        assert!(moved, "nothing listens on {other}");
        assert!(
            std::net::TcpStream::connect(addr).is_err(),
            "{addr} still open"
        );
        let ok = exchange(
            other,
            "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        );
        assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
        // Back to the first port (bound again once the old socket is gone),
        // then off.
        rt.handle.enter_and(|| shell.configure(Some(addr)));
        assert!((0..100).any(|_| {
            std::thread::sleep(Duration::from_millis(50));
            std::net::TcpStream::connect(addr).is_ok()
        }));
        rt.handle.enter_and(|| shell.configure(None));
        assert!((0..100).any(|_| {
            std::thread::sleep(Duration::from_millis(50));
            std::net::TcpStream::connect(addr).is_err()
        }));
        assert_eq!(shell.listen(), None);
    }
}
