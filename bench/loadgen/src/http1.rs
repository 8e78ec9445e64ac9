//! A minimal HTTP/1.1 client connection: one request at a time on one keep-alive socket.
//!
//! The load generator shares the benchmark machine's two cores with the server it measures, so
//! every microsecond it spends per call is one the server does not get. hyper's client runs each
//! connection as a task of its own beside the task that sends on it (two wake-ups per call) and
//! builds a header map per request; this writes the request's bytes in one `write` and parses the
//! answer in place (httparse), in the client's own task. What it understands of responses is what
//! the servers it drives send: `Content-Length` or chunked bodies, `Connection: close`, and a
//! body ended by the connection closing.

use std::io;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Most response header lines read.
const MAX_HEADERS: usize = 64;
/// Largest response (head and body) accepted: the benchmarks' answers are a few KiB.
const MAX_RESPONSE: usize = 16 * 1024 * 1024;

pub struct Conn {
    stream: TcpStream,
    /// Bytes read and not yet used (the start of a pipelined or early answer).
    buf: Vec<u8>,
}

/// What came back: the status, the body, and whether the connection may be used again.
pub struct Answer {
    pub status: u16,
    pub body: Vec<u8>,
    pub reusable: bool,
}

impl Conn {
    pub async fn connect(endpoint: &str) -> Result<Conn, String> {
        let stream = TcpStream::connect(endpoint).await.map_err(|e| format!("connect {endpoint}: {e}"))?;
        stream.set_nodelay(true).map_err(|e| e.to_string())?;
        Ok(Conn { stream, buf: Vec::with_capacity(8192) })
    }

    /// Sends `request` (a whole HTTP/1.1 request) and reads its answer.
    pub async fn roundtrip(&mut self, request: &[u8]) -> io::Result<Answer> {
        self.stream.write_all(request).await?;
        self.read_answer().await
    }

    async fn read_answer(&mut self) -> io::Result<Answer> {
        loop {
            let (status, head_len, body_kind, close) = {
                let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
                let mut resp = httparse::Response::new(&mut headers);
                match resp.parse(&self.buf).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))? {
                    httparse::Status::Complete(n) => {
                        let status = resp.code.unwrap_or(0);
                        let mut kind = BodyKind::UntilClose;
                        let mut close = resp.version == Some(0);
                        for h in resp.headers.iter() {
                            if h.name.eq_ignore_ascii_case("content-length") {
                                let len = std::str::from_utf8(h.value)
                                    .ok()
                                    .and_then(|v| v.trim().parse::<usize>().ok())
                                    .ok_or_else(|| invalid("bad Content-Length"))?;
                                // Chunked wins over a length, wherever the headers put it (RFC 9112 6.3).
                                if !matches!(kind, BodyKind::Chunked) {
                                    kind = BodyKind::Length(len);
                                }
                            } else if h.name.eq_ignore_ascii_case("transfer-encoding") && contains_token(h.value, "chunked") {
                                kind = BodyKind::Chunked;
                            } else if h.name.eq_ignore_ascii_case("connection") {
                                if contains_token(h.value, "close") {
                                    close = true;
                                } else if contains_token(h.value, "keep-alive") {
                                    close = false;
                                }
                            }
                        }
                        if status == 204 || status == 304 {
                            kind = BodyKind::Length(0);
                        }
                        (status, n, kind, close)
                    }
                    httparse::Status::Partial => {
                        self.fill().await?;
                        continue;
                    }
                }
            };
            self.buf.drain(..head_len);
            if (100..200).contains(&status) {
                // An interim answer (100 Continue): the real one follows.
                continue;
            }
            let body = match body_kind {
                BodyKind::Length(len) => {
                    while self.buf.len() < len {
                        self.fill().await?;
                    }
                    self.buf.drain(..len).collect()
                }
                BodyKind::Chunked => self.read_chunked().await?,
                BodyKind::UntilClose => {
                    while self.fill_or_eof().await? {}
                    return Ok(Answer { status, body: std::mem::take(&mut self.buf), reusable: false });
                }
            };
            return Ok(Answer { status, body, reusable: !close });
        }
    }

    async fn read_chunked(&mut self) -> io::Result<Vec<u8>> {
        let mut body = Vec::new();
        loop {
            let line_end = loop {
                if let Some(i) = self.buf.windows(2).position(|w| w == b"\r\n") {
                    break i;
                }
                self.fill().await?;
            };
            let size_text = std::str::from_utf8(&self.buf[..line_end]).map_err(|_| invalid("bad chunk size"))?;
            let size_text = size_text.split(';').next().unwrap_or("").trim();
            let size = usize::from_str_radix(size_text, 16).map_err(|_| invalid("bad chunk size"))?;
            self.buf.drain(..line_end + 2);
            if size == 0 {
                // Trailers (none expected) end with an empty line.
                loop {
                    if let Some(i) = self.buf.windows(2).position(|w| w == b"\r\n") {
                        self.buf.drain(..i + 2);
                        if i == 0 {
                            return Ok(body);
                        }
                    } else {
                        self.fill().await?;
                    }
                }
            }
            while self.buf.len() < size + 2 {
                self.fill().await?;
            }
            body.extend_from_slice(&self.buf[..size]);
            self.buf.drain(..size + 2);
        }
    }

    /// Reads more; an error if the connection closed.
    async fn fill(&mut self) -> io::Result<()> {
        if self.fill_or_eof().await? { Ok(()) } else { Err(io::Error::new(io::ErrorKind::UnexpectedEof, "connection closed mid-answer")) }
    }

    /// Reads more; false once the connection closed.
    async fn fill_or_eof(&mut self) -> io::Result<bool> {
        if self.buf.len() > MAX_RESPONSE {
            return Err(invalid("answer too large"));
        }
        self.buf.reserve(8192);
        let n = self.stream.read_buf(&mut self.buf).await?;
        Ok(n > 0)
    }
}

enum BodyKind {
    Length(usize),
    Chunked,
    UntilClose,
}

fn contains_token(value: &[u8], token: &str) -> bool {
    value.split(|b| *b == b',').any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_string())
}

/// Writes a request's head and body into `out` (cleared first).
pub fn write_request(out: &mut Vec<u8>, method: &str, target: &str, headers: &[(&str, &str)], body: &[u8]) {
    out.clear();
    out.extend_from_slice(method.as_bytes());
    out.push(b' ');
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    for (k, v) in headers {
        out.extend_from_slice(k.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(v.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"content-length: ");
    out.extend_from_slice(body.len().to_string().as_bytes());
    out.extend_from_slice(b"\r\n\r\n");
    out.extend_from_slice(body);
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    /// Serves `answers` in turn, one per request read (a request ends with its blank line;
    /// the tests send no bodies), and returns what it read.
    async fn server(answers: Vec<&'static [u8]>) -> (String, tokio::task::JoinHandle<Vec<u8>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let task = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut seen = Vec::new();
            for a in answers {
                let mut req = Vec::new();
                while !req.ends_with(b"\r\n\r\n") {
                    let mut b = [0u8; 1];
                    if s.read(&mut b).await.unwrap() == 0 {
                        return seen;
                    }
                    req.push(b[0]);
                }
                seen.extend_from_slice(&req);
                // Written in two pieces, so the client has to read more than once.
                let (x, y) = a.split_at(a.len() / 2);
                s.write_all(x).await.unwrap();
                s.flush().await.unwrap();
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                s.write_all(y).await.unwrap();
            }
            seen
        });
        (addr, task)
    }

    /// A GET of `path` on `c`; a stuck read (a body length misread) fails the test.
    async fn get(c: &mut Conn, path: &str) -> io::Result<Answer> {
        let mut out = Vec::new();
        write_request(&mut out, "GET", path, &[("host", "x")], b"");
        tokio::time::timeout(std::time::Duration::from_secs(5), c.roundtrip(&out)).await.expect("an answer within 5 s")
    }

    #[tokio::test]
    async fn reads_length_chunked_and_interim_answers_on_one_connection() {
        let (addr, task) = server(vec![
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\nContent-Length: 99\r\n\r\n3;x=y\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
            b"HTTP/1.1 204 No Content\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok",
        ])
        .await;
        let mut c = Conn::connect(&addr).await.unwrap();
        let a = get(&mut c, "/a").await.unwrap();
        assert_eq!((a.status, a.body.as_slice(), a.reusable), (200, &b"hello"[..], true));
        let a = get(&mut c, "/b").await.unwrap();
        assert_eq!((a.status, a.body.as_slice(), a.reusable), (404, &b"abcde"[..], true));
        let a = get(&mut c, "/c").await.unwrap();
        assert_eq!((a.status, a.body.len(), a.reusable), (204, 0, true));
        let a = get(&mut c, "/d").await.unwrap();
        assert_eq!((a.status, a.body.as_slice(), a.reusable), (200, &b"ok"[..], false));
        let seen = String::from_utf8(task.await.unwrap()).unwrap();
        assert!(seen.starts_with("GET /a HTTP/1.1\r\nhost: x\r\ncontent-length: 0\r\n\r\nGET /b"), "{seen}");
    }

    #[tokio::test]
    async fn http10_and_a_body_ended_by_close_are_not_reused() {
        let (addr, _task) = server(vec![b"HTTP/1.0 200 OK\r\n\r\nuntil the end"]).await;
        let mut c = Conn::connect(&addr).await.unwrap();
        let a = get(&mut c, "/").await.unwrap();
        assert_eq!((a.status, a.body.as_slice(), a.reusable), (200, &b"until the end"[..], false));
    }

    #[tokio::test]
    async fn a_connection_closed_mid_answer_is_an_error() {
        let (addr, _task) = server(vec![b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\nshort"]).await;
        let mut c = Conn::connect(&addr).await.unwrap();
        let e = get(&mut c, "/").await.err().expect("an error");
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
    }
}
