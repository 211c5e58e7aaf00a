//! The `wgctl` side of the control socket.

use super::proto::{Request, Response, MAX_RESPONSE};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

/// Why the daemon could not be asked.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Nothing listens on the socket (the daemon is not running).
    #[error("ipieced is not running (no control socket at {path}): {source}")]
    NotRunning {
        /// The socket path.
        path: String,
        /// The connect error.
        source: std::io::Error,
    },
    /// The exchange failed midway.
    #[error("control socket {path}: {source}")]
    Io {
        /// The socket path.
        path: String,
        /// The error.
        source: std::io::Error,
    },
    /// The daemon answered something that is not a response.
    #[error("control socket {path}: malformed response: {detail}")]
    Malformed {
        /// The socket path.
        path: String,
        /// The parse error.
        detail: String,
    },
}

/// Sends one request and waits (bounded by `timeout`) for the response.
pub fn request(socket: &Path, req: &Request, timeout: Duration) -> Result<Response, ClientError> {
    let path = socket.display().to_string();
    let io = |source| ClientError::Io {
        path: path.clone(),
        source,
    };
    let mut s = UnixStream::connect(socket).map_err(|source| ClientError::NotRunning {
        path: path.clone(),
        source,
    })?;
    s.set_read_timeout(Some(timeout)).map_err(io)?;
    s.set_write_timeout(Some(timeout)).map_err(io)?;
    let mut line = serde_json::to_vec(req).expect("requests serialize");
    line.push(b'\n');
    s.write_all(&line).map_err(io)?;
    let mut reader = BufReader::new(s.take(MAX_RESPONSE as u64));
    let mut buf = String::new();
    reader.read_line(&mut buf).map_err(io)?;
    serde_json::from_str(&buf).map_err(|e| ClientError::Malformed {
        path: path.clone(),
        detail: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    /// A daemon with many peers answers `status` with more than the 1 MiB a
    /// request may have (10,000 peers: about 6 MB); the client reads it whole.
    #[test]
    fn reads_a_response_larger_than_a_request_line() {
        let dir = crate::config::testutil::TempDir::new();
        let sock = dir.path().join("control.sock");
        let listener = UnixListener::bind(&sock).unwrap();
        let big = Response::Error {
            message: "x".repeat(8 << 20),
        };
        let want = big.clone();
        let server = std::thread::spawn(move || {
            let (s, _) = listener.accept().unwrap();
            let mut line = String::new();
            BufReader::new(&s).read_line(&mut line).unwrap();
            let mut out = serde_json::to_vec(&big).unwrap();
            out.push(b'\n');
            (&s).write_all(&out).unwrap();
        });
        let got = request(&sock, &Request::Status, Duration::from_secs(30)).unwrap();
        server.join().unwrap();
        assert_eq!(got, want);
    }
}
