//! A real SMTP listener for tests: speaks SMTP over TCP on a free port (220 greeting, EHLO/HELO,
//! MAIL FROM, RCPT TO, DATA with dot-unstuffing, RSET, NOOP, QUIT) and keeps every message it
//! accepted with its envelope, so a test checks what a service really sent.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One accepted message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedMail {
    /// The name the client gave in EHLO/HELO.
    pub helo: String,
    /// The envelope sender (inside `<>`).
    pub mail_from: String,
    /// The envelope recipients (inside `<>`), in order.
    pub rcpt_to: Vec<String>,
    /// The message as sent after DATA (headers and body, CRLF line ends, dot-unstuffed).
    pub data: String,
}

impl ReceivedMail {
    /// The first header of that name (case-insensitive), unfolded.
    pub fn header(&self, name: &str) -> Option<String> {
        let head = self.data.split("\r\n\r\n").next().unwrap_or_default();
        let mut found: Option<String> = None;
        for line in head.split("\r\n") {
            if let Some(v) = found.as_mut() {
                if line.starts_with(' ') || line.starts_with('\t') {
                    v.push(' ');
                    v.push_str(line.trim());
                    continue;
                }
                break;
            }
            if let Some((k, v)) = line.split_once(':')
                && k.eq_ignore_ascii_case(name)
            {
                found = Some(v.trim().to_owned());
            }
        }
        found
    }

    /// The body after the headers.
    pub fn body(&self) -> &str {
        self.data
            .split_once("\r\n\r\n")
            .map(|(_, b)| b)
            .unwrap_or_default()
    }
}

/// The listener; stops accepting when dropped (the thread ends at the next connection attempt
/// or with the process).
pub struct SmtpServer {
    addr: SocketAddr,
    mails: Arc<Mutex<Vec<ReceivedMail>>>,
}

impl SmtpServer {
    /// Listens on 127.0.0.1 on a free port.
    pub fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the SMTP listener");
        let addr = listener.local_addr().expect("SMTP listener address");
        let mails = Arc::new(Mutex::new(Vec::new()));
        let store = mails.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let store = store.clone();
                std::thread::spawn(move || {
                    let _ = session(conn, &store);
                });
            }
        });
        Self { addr, mails }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every message accepted so far.
    pub fn mails(&self) -> Vec<ReceivedMail> {
        self.mails.lock().map(|m| m.clone()).unwrap_or_default()
    }

    /// Waits (polling) until at least `n` messages arrived, up to `within`.
    pub fn wait_for(&self, n: usize, within: Duration) -> Vec<ReceivedMail> {
        let deadline = Instant::now() + within;
        loop {
            let mails = self.mails();
            if mails.len() >= n || Instant::now() >= deadline {
                return mails;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn angle(arg: &str) -> String {
    let arg = arg.trim();
    match (arg.find('<'), arg.find('>')) {
        (Some(a), Some(b)) if a < b => arg[a + 1..b].to_owned(),
        _ => arg.split_whitespace().next().unwrap_or_default().to_owned(),
    }
}

fn session(conn: TcpStream, store: &Mutex<Vec<ReceivedMail>>) -> std::io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut out = conn.try_clone()?;
    let mut reader = BufReader::new(conn);
    out.write_all(b"220 testkit ESMTP ready\r\n")?;
    let mut helo = String::new();
    let mut from = String::new();
    let mut rcpt: Vec<String> = Vec::new();
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let cmd = line.trim_end_matches(['\r', '\n']);
        let upper = cmd.to_ascii_uppercase();
        if upper.starts_with("EHLO") {
            helo = cmd[4..].trim().to_owned();
            out.write_all(b"250-testkit greets you\r\n250-8BITMIME\r\n250 SIZE 10485760\r\n")?;
        } else if upper.starts_with("HELO") {
            helo = cmd[4..].trim().to_owned();
            out.write_all(b"250 testkit\r\n")?;
        } else if upper.starts_with("MAIL FROM:") {
            from = angle(&cmd[10..]);
            rcpt.clear();
            out.write_all(b"250 2.1.0 sender ok\r\n")?;
        } else if upper.starts_with("RCPT TO:") {
            rcpt.push(angle(&cmd[8..]));
            out.write_all(b"250 2.1.5 recipient ok\r\n")?;
        } else if upper == "DATA" {
            if rcpt.is_empty() {
                out.write_all(b"503 5.5.1 no recipients\r\n")?;
                continue;
            }
            out.write_all(b"354 end data with <CR><LF>.<CR><LF>\r\n")?;
            let mut data = String::new();
            loop {
                line.clear();
                if reader.read_line(&mut line)? == 0 {
                    return Ok(());
                }
                let l = line.trim_end_matches(['\r', '\n']);
                if l == "." {
                    break;
                }
                let l = l.strip_prefix('.').unwrap_or(l);
                data.push_str(l);
                data.push_str("\r\n");
            }
            if let Ok(mut m) = store.lock() {
                m.push(ReceivedMail {
                    helo: helo.clone(),
                    mail_from: from.clone(),
                    rcpt_to: std::mem::take(&mut rcpt),
                    data,
                });
            }
            out.write_all(b"250 2.0.0 queued as testkit\r\n")?;
        } else if upper == "RSET" {
            from.clear();
            rcpt.clear();
            out.write_all(b"250 2.0.0 ok\r\n")?;
        } else if upper == "NOOP" {
            out.write_all(b"250 2.0.0 ok\r\n")?;
        } else if upper == "QUIT" {
            out.write_all(b"221 2.0.0 bye\r\n")?;
            return Ok(());
        } else {
            out.write_all(b"502 5.5.2 command not implemented\r\n")?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plain_smtp_conversation_is_recorded() {
        let server = SmtpServer::start();
        let conn = TcpStream::connect(server.addr()).unwrap();
        let mut out = conn.try_clone().unwrap();
        let mut r = BufReader::new(conn);
        let mut line = String::new();
        let mut expect = |r: &mut BufReader<TcpStream>, code: &str| loop {
            line.clear();
            r.read_line(&mut line).unwrap();
            assert!(line.starts_with(code), "{line}");
            if line.as_bytes().get(3) != Some(&b'-') {
                break;
            }
        };
        expect(&mut r, "220");
        out.write_all(b"EHLO me\r\n").unwrap();
        expect(&mut r, "250");
        out.write_all(b"MAIL FROM:<a@x.org>\r\n").unwrap();
        expect(&mut r, "250");
        out.write_all(b"RCPT TO:<b@y.org>\r\n").unwrap();
        expect(&mut r, "250");
        out.write_all(b"DATA\r\n").unwrap();
        expect(&mut r, "354");
        out.write_all(b"Subject: hello\r\n there\r\n\r\n..dot\r\n.\r\n")
            .unwrap();
        expect(&mut r, "250");
        out.write_all(b"QUIT\r\n").unwrap();
        expect(&mut r, "221");
        let mails = server.wait_for(1, Duration::from_secs(5));
        assert_eq!(mails.len(), 1);
        assert_eq!(mails[0].helo, "me");
        assert_eq!(mails[0].mail_from, "a@x.org");
        assert_eq!(mails[0].rcpt_to, vec!["b@y.org"]);
        assert_eq!(mails[0].header("subject").as_deref(), Some("hello there"));
        assert_eq!(mails[0].body(), ".dot\r\n");
    }
}
