//! A real HTTP receiver for webhook tests: speaks HTTP/1.1 over TCP on a free port (keep-alive,
//! `Content-Length` and chunked bodies), answers every request `200 ok`, and keeps each request
//! it got (method, path, headers, body), so a test checks what a service really sent and how
//! many times.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One request the receiver got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedRequest {
    pub method: String,
    pub path: String,
    /// Header names in lower case.
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
}

impl ReceivedRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }

    /// The `Idempotency-Key` header, or "".
    pub fn idempotency_key(&self) -> &str {
        self.header("idempotency-key").unwrap_or_default()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }
}

/// The listener; stops accepting when the process ends.
pub struct WebhookReceiver {
    addr: SocketAddr,
    requests: Arc<Mutex<Vec<ReceivedRequest>>>,
}

impl WebhookReceiver {
    /// Listens on 127.0.0.1 on a free port.
    pub fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the webhook listener");
        let addr = listener.local_addr().expect("webhook listener address");
        let requests = Arc::new(Mutex::new(Vec::new()));
        let store = requests.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let store = store.clone();
                std::thread::spawn(move || {
                    let _ = serve(conn, &store);
                });
            }
        });
        Self { addr, requests }
    }

    /// `http://127.0.0.1:<port><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Every request so far, in the order they arrived.
    pub fn requests(&self) -> Vec<ReceivedRequest> {
        self.requests.lock().map(|r| r.clone()).unwrap_or_default()
    }

    /// Polls until `pred` holds for the requests so far, up to `within`; answers the requests.
    pub fn wait_until(
        &self,
        within: Duration,
        pred: impl Fn(&[ReceivedRequest]) -> bool,
    ) -> Result<Vec<ReceivedRequest>, Vec<ReceivedRequest>> {
        let deadline = Instant::now() + within;
        loop {
            let requests = self.requests();
            if pred(&requests) {
                return Ok(requests);
            }
            if Instant::now() >= deadline {
                return Err(requests);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn line(reader: &mut impl BufRead) -> std::io::Result<Option<String>> {
    let mut l = String::new();
    if reader.read_line(&mut l)? == 0 {
        return Ok(None);
    }
    Ok(Some(l.trim_end_matches(['\r', '\n']).to_owned()))
}

fn bad(what: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_owned())
}

fn chunked(reader: &mut impl BufRead) -> std::io::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let size = line(reader)?.ok_or_else(|| bad("chunk size"))?;
        let size = size.split(';').next().unwrap_or_default().trim();
        let n = usize::from_str_radix(size, 16).map_err(|_| bad("chunk size"))?;
        if n == 0 {
            // trailers up to the empty line
            while line(reader)?.is_some_and(|l| !l.is_empty()) {}
            return Ok(body);
        }
        let start = body.len();
        body.resize(start + n, 0);
        reader.read_exact(&mut body[start..])?;
        line(reader)?;
    }
}

fn serve(conn: TcpStream, store: &Mutex<Vec<ReceivedRequest>>) -> std::io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut out = conn.try_clone()?;
    let mut reader = BufReader::new(conn);
    loop {
        let Some(request_line) = line(&mut reader)? else {
            return Ok(());
        };
        if request_line.is_empty() {
            continue;
        }
        let mut parts = request_line.split_whitespace();
        let method = parts.next().unwrap_or_default().to_owned();
        let path = parts.next().unwrap_or_default().to_owned();
        let mut headers = HashMap::new();
        loop {
            let l = line(&mut reader)?.ok_or_else(|| bad("headers"))?;
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':') {
                headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
            }
        }
        let body = if headers
            .get("transfer-encoding")
            .is_some_and(|t| t.eq_ignore_ascii_case("chunked"))
        {
            chunked(&mut reader)?
        } else {
            let n: usize = headers
                .get("content-length")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            let mut body = vec![0; n];
            reader.read_exact(&mut body)?;
            body
        };
        let close = headers
            .get("connection")
            .is_some_and(|c| c.eq_ignore_ascii_case("close"));
        if let Ok(mut r) = store.lock() {
            r.push(ReceivedRequest {
                method,
                path,
                headers,
                body,
            });
        }
        out.write_all(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 2\r\n\r\nok",
        )?;
        out.flush()?;
        if close {
            return Ok(());
        }
    }
}
