//! The one HTTP/1.1 client of the harness and the capacity planner: a keep-alive [`Connection`]
//! that sends pre-encoded request bytes, and the response [`Parser`] under it: the status line,
//! headers up to the empty line, and the body framed by `Content-Length`,
//! `Transfer-Encoding: chunked` or the end of the connection. Body bytes are skipped as they
//! arrive (only a short prefix is kept, for answer checks, and batch verdicts are counted), so
//! the read buffer never has to hold a whole body. No allocation per request.

use std::fmt;
use std::net::SocketAddr;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// The longest response head accepted.
pub const MAX_HEAD: usize = 64 * 1024;

/// How many body bytes an [`Answer`] keeps.
pub const PREFIX: usize = 32;

/// The count of `{"active":true` and `{"active":false` verdicts in a batch answer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Verdicts {
    pub active: u32,
    pub inactive: u32,
}

/// What a complete response said.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    /// The server closes the connection after this response.
    pub close: bool,
    prefix: [u8; PREFIX],
    prefix_len: u8,
    /// Whether body bytes are searched for verdicts (batch answers only: it costs a pass over
    /// every body byte).
    count: bool,
    /// How much of [`VERDICT`] the bytes so far end with.
    matched: u8,
    verdicts: Verdicts,
}

/// What starts each verdict of a batch answer; `t` or `f` follows.
const VERDICT: &[u8] = b"{\"active\":";

impl Answer {
    const fn new(count: bool) -> Self {
        Answer {
            status: 0,
            close: false,
            prefix: [0; PREFIX],
            prefix_len: 0,
            count,
            matched: 0,
            verdicts: Verdicts {
                active: 0,
                inactive: 0,
            },
        }
    }

    /// An answer read some other way (HTTP/2): `status`, and body bytes given to
    /// [`Answer::keep`]; `count` as for [`Parser::reset`].
    pub fn with_status(status: u16, count: bool) -> Self {
        Answer {
            status,
            ..Answer::new(count)
        }
    }

    /// The `{"active":true` and `{"active":false` found in the body, if they were counted.
    pub fn verdicts(&self) -> Option<Verdicts> {
        self.count.then_some(self.verdicts)
    }

    /// The first body bytes (chunked framing removed), at most [`PREFIX`].
    pub fn body_prefix(&self) -> &[u8] {
        &self.prefix[..usize::from(self.prefix_len)]
    }

    /// Keeps what still fits of the prefix from the next body bytes.
    pub fn keep(&mut self, data: &[u8]) {
        let have = usize::from(self.prefix_len);
        let n = data.len().min(PREFIX - have);
        self.prefix[have..have + n].copy_from_slice(&data[..n]);
        // At most PREFIX (32): fits a u8.
        self.prefix_len = (have + n) as u8;
        if self.count {
            self.count_verdicts(data);
        }
    }

    /// Counts verdicts across the pieces a body arrives in. `{` occurs in [`VERDICT`] only at
    /// its start, so a mismatch restarts the match at the current byte.
    fn count_verdicts(&mut self, data: &[u8]) {
        let mut i = 0;
        while i < data.len() {
            let matched = usize::from(self.matched);
            if matched == 0 {
                match data[i..].iter().position(|&b| b == b'{') {
                    Some(at) => i += at + 1,
                    None => return,
                }
                self.matched = 1;
                continue;
            }
            let b = data[i];
            i += 1;
            if matched == VERDICT.len() {
                match b {
                    b't' => self.verdicts.active += 1,
                    b'f' => self.verdicts.inactive += 1,
                    _ => {}
                }
                self.matched = u8::from(b == b'{');
            } else if b == VERDICT[matched] {
                self.matched += 1;
            } else {
                self.matched = u8::from(b == b'{');
            }
        }
    }
}

/// The server broke the protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProtocolError(pub &'static str);

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Head,
    /// This many body bytes still to come.
    Length(u64),
    Chunked(Chunk),
    /// The body ends when the server closes the connection.
    UntilClose,
    Done,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Chunk {
    /// Reading the hex size; `digits` so far.
    Size {
        size: u64,
        digits: u8,
    },
    /// After the size: extensions up to the end of the line.
    Extension {
        size: u64,
    },
    /// Data bytes still to come in this chunk.
    Data(u64),
    /// The CRLF after a chunk's data.
    DataCr,
    DataLf,
    /// Trailer section after the last chunk; `empty` while the current line has no bytes yet.
    Trailer {
        empty: bool,
    },
}

/// One response at a time, fed with whatever the socket gave.
#[derive(Debug)]
pub struct Parser {
    state: State,
    answer: Answer,
}

impl Default for Parser {
    fn default() -> Self {
        Parser::new()
    }
}

impl Parser {
    pub const fn new() -> Self {
        Parser {
            state: State::Head,
            answer: Answer::new(false),
        }
    }

    /// Ready for the next response; `count`: whether its body's verdicts are counted (see
    /// [`Answer::verdicts`]).
    pub fn reset(&mut self, count: bool) {
        *self = Parser {
            state: State::Head,
            answer: Answer::new(count),
        };
    }

    /// The finished response, once [`Parser::advance`] or [`Parser::eof`] completed it.
    pub fn answer(&self) -> Option<Answer> {
        (self.state == State::Done).then_some(self.answer)
    }

    /// Consumes what it can of `buf` and says how many bytes it used. A response head is used
    /// only once it is complete: the caller keeps the unused bytes and calls again with more.
    /// Stops at the end of the response; bytes after it are left unused.
    pub fn advance(&mut self, buf: &[u8]) -> Result<usize, ProtocolError> {
        let mut at = 0;
        loop {
            let rest = &buf[at..];
            match self.state {
                State::Done => return Ok(at),
                State::Head => match head(rest)? {
                    None => {
                        if rest.len() > MAX_HEAD {
                            return Err(ProtocolError("response head too large"));
                        }
                        return Ok(at);
                    }
                    Some(head) => {
                        at += head.len;
                        // Interim answers (100 Continue, 103 Early Hints) precede the real one.
                        if (100..200).contains(&head.status) {
                            if head.status == 101 {
                                return Err(ProtocolError("unrequested protocol switch"));
                            }
                            continue;
                        }
                        self.answer.status = head.status;
                        self.answer.close = head.close;
                        self.state = match head.body {
                            _ if head.status == 204 || head.status == 304 => State::Done,
                            Framing::Chunked => State::Chunked(Chunk::Size { size: 0, digits: 0 }),
                            Framing::Length(0) => State::Done,
                            Framing::Length(n) => State::Length(n),
                            Framing::UntilClose => {
                                self.answer.close = true;
                                State::UntilClose
                            }
                        };
                    }
                },
                State::Length(remaining) => {
                    let n = remaining.min(rest.len() as u64);
                    // n <= rest.len(): fits a usize.
                    let n = n as usize;
                    self.answer.keep(&rest[..n]);
                    at += n;
                    if n as u64 == remaining {
                        self.state = State::Done;
                    } else {
                        self.state = State::Length(remaining - n as u64);
                        return Ok(at);
                    }
                }
                State::UntilClose => {
                    self.answer.keep(rest);
                    return Ok(buf.len());
                }
                State::Chunked(chunk) => {
                    let (used, next) = self.chunked(chunk, rest)?;
                    at += used;
                    self.state = next;
                    if matches!(next, State::Chunked(_)) {
                        return Ok(at);
                    }
                }
            }
        }
    }

    /// The connection ended: completes a body that runs to the end of the connection, and is
    /// an error anywhere else.
    pub fn eof(&mut self) -> Result<(), ProtocolError> {
        match self.state {
            State::UntilClose | State::Done => {
                self.state = State::Done;
                Ok(())
            }
            State::Head => Err(ProtocolError("connection closed before a response")),
            _ => Err(ProtocolError("connection closed inside a response body")),
        }
    }

    /// Runs the chunked decoder over `buf`: bytes used, and the state after them (still
    /// `Chunked` when it wants more).
    fn chunked(&mut self, mut chunk: Chunk, buf: &[u8]) -> Result<(usize, State), ProtocolError> {
        let mut i = 0;
        while i < buf.len() {
            let b = buf[i];
            chunk = match chunk {
                Chunk::Size { size, digits } => match hex(b) {
                    Some(d) => {
                        if digits >= 15 {
                            return Err(ProtocolError("chunk size too large"));
                        }
                        i += 1;
                        Chunk::Size {
                            size: size << 4 | u64::from(d),
                            digits: digits + 1,
                        }
                    }
                    None if digits == 0 => return Err(ProtocolError("chunk size missing")),
                    None => match b {
                        b';' | b' ' | b'\t' | b'\r' => {
                            i += 1;
                            Chunk::Extension { size }
                        }
                        b'\n' => {
                            i += 1;
                            after_size(size)
                        }
                        _ => return Err(ProtocolError("bad chunk size")),
                    },
                },
                Chunk::Extension { size } => {
                    i += 1;
                    if b == b'\n' {
                        after_size(size)
                    } else {
                        Chunk::Extension { size }
                    }
                }
                Chunk::Data(remaining) => {
                    let n = remaining.min((buf.len() - i) as u64);
                    // n <= buf.len() - i: fits a usize.
                    let n = n as usize;
                    self.answer.keep(&buf[i..i + n]);
                    i += n;
                    if n as u64 == remaining {
                        Chunk::DataCr
                    } else {
                        Chunk::Data(remaining - n as u64)
                    }
                }
                Chunk::DataCr => {
                    i += 1;
                    match b {
                        b'\r' => Chunk::DataLf,
                        b'\n' => Chunk::Size { size: 0, digits: 0 },
                        _ => return Err(ProtocolError("chunk data longer than its size")),
                    }
                }
                Chunk::DataLf => {
                    i += 1;
                    match b {
                        b'\n' => Chunk::Size { size: 0, digits: 0 },
                        _ => return Err(ProtocolError("chunk data longer than its size")),
                    }
                }
                Chunk::Trailer { empty } => {
                    i += 1;
                    match b {
                        b'\n' if empty => return Ok((i, State::Done)),
                        b'\n' => Chunk::Trailer { empty: true },
                        b'\r' if empty => Chunk::Trailer { empty: true },
                        _ => Chunk::Trailer { empty: false },
                    }
                }
            };
        }
        Ok((i, State::Chunked(chunk)))
    }
}

fn after_size(size: u64) -> Chunk {
    if size == 0 {
        Chunk::Trailer { empty: true }
    } else {
        Chunk::Data(size)
    }
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

enum Framing {
    Length(u64),
    Chunked,
    UntilClose,
}

struct Head {
    /// Bytes up to and including the empty line.
    len: usize,
    status: u16,
    close: bool,
    body: Framing,
}

/// The next line of `buf` from `at`: its end (without CR LF) and where the following line
/// starts, or `None` when the line is not complete yet.
fn line(buf: &[u8], at: usize) -> Option<(usize, usize)> {
    let lf = at + buf[at..].iter().position(|&b| b == b'\n')?;
    let end = if lf > at && buf[lf - 1] == b'\r' {
        lf - 1
    } else {
        lf
    };
    Some((end, lf + 1))
}

fn trim(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// Parses a complete response head at the start of `buf`, or `None` when it is not all there.
fn head(buf: &[u8]) -> Result<Option<Head>, ProtocolError> {
    let Some((end, mut next)) = line(buf, 0) else {
        return Ok(None);
    };
    let status_line = &buf[..end];
    let (keep_alive_default, status) = match status_line {
        [b'H', b'T', b'T', b'P', b'/', b'1', b'.', minor, b' ', a, b, c, rest @ ..]
            if a.is_ascii_digit()
                && b.is_ascii_digit()
                && c.is_ascii_digit()
                && (rest.is_empty() || rest[0] == b' ') =>
        {
            let status = u16::from(a - b'0') * 100 + u16::from(b - b'0') * 10 + u16::from(c - b'0');
            (*minor != b'0', status)
        }
        _ => return Err(ProtocolError("bad status line")),
    };
    if !(100..=599).contains(&status) {
        return Err(ProtocolError("status out of range"));
    }
    let mut length: Option<u64> = None;
    let mut chunked = false;
    let mut encoded = false;
    let mut close = false;
    let mut keep_alive = false;
    loop {
        let Some((end, after)) = line(buf, next) else {
            return Ok(None);
        };
        let field = &buf[next..end];
        next = after;
        if field.is_empty() {
            break;
        }
        let Some(colon) = field.iter().position(|&b| b == b':') else {
            return Err(ProtocolError("header line without a colon"));
        };
        let (name, value) = (&field[..colon], trim(&field[colon + 1..]));
        if name.eq_ignore_ascii_case(b"content-length") {
            let n = decimal(value).ok_or(ProtocolError("bad Content-Length"))?;
            if length.is_some_and(|l| l != n) {
                return Err(ProtocolError("conflicting Content-Length"));
            }
            length = Some(n);
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            encoded = true;
            // Chunked must be the last coding applied.
            chunked = value
                .rsplit(|&b| b == b',')
                .next()
                .is_some_and(|last| trim(last).eq_ignore_ascii_case(b"chunked"));
        } else if name.eq_ignore_ascii_case(b"connection") {
            for token in value.split(|&b| b == b',') {
                let token = trim(token);
                close |= token.eq_ignore_ascii_case(b"close");
                keep_alive |= token.eq_ignore_ascii_case(b"keep-alive");
            }
        }
    }
    let body = if encoded {
        // RFC 9112 6.3: Transfer-Encoding overrides Content-Length; a coding other than chunked
        // last runs to the end of the connection.
        if chunked {
            Framing::Chunked
        } else {
            Framing::UntilClose
        }
    } else {
        match length {
            Some(n) => Framing::Length(n),
            None => Framing::UntilClose,
        }
    };
    let persistent = if keep_alive_default {
        !close
    } else {
        keep_alive && !close
    };
    Ok(Some(Head {
        len: next,
        status,
        close: !persistent,
        body,
    }))
}

fn decimal(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 18 {
        return None;
    }
    s.iter().try_fold(0u64, |n, &b| {
        b.is_ascii_digit().then(|| n * 10 + u64::from(b - b'0'))
    })
}

/// Why an exchange on a [`Connection`] failed. The connection is closed after any of them.
#[non_exhaustive]
#[derive(Debug)]
pub enum ExchangeError {
    /// No connection is open: [`Connection::connect`] first.
    NotConnected,
    /// Sending the request failed: the connection broke.
    Write(std::io::Error),
    /// Reading the answer failed: the connection broke.
    Read(std::io::Error),
    /// The server closed the connection before the answer was complete.
    Closed,
    /// The server's answer is not HTTP/1.1 as [`Parser`] reads it, or bytes came after it that
    /// nobody asked for: the server's fault.
    Protocol(ProtocolError),
}

impl fmt::Display for ExchangeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExchangeError::NotConnected => f.write_str("no connection is open"),
            ExchangeError::Write(e) => write!(f, "sending: {e}"),
            ExchangeError::Read(e) => write!(f, "reading: {e}"),
            ExchangeError::Closed => f.write_str("the server closed the connection mid-answer"),
            ExchangeError::Protocol(e) => write!(f, "the server broke HTTP/1.1: {e}"),
        }
    }
}

impl std::error::Error for ExchangeError {}

/// Opens a TCP connection to `addr` with Nagle's algorithm off.
pub async fn open(addr: SocketAddr) -> std::io::Result<TcpStream> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// One keep-alive HTTP/1.1 connection with one request in flight. It closes itself after an
/// error or an answer that says `Connection: close`; [`Connection::connect`] opens it again.
#[derive(Debug)]
pub struct Connection {
    stream: Option<TcpStream>,
    /// Read buffer: `buf[pos..filled]` is received and not yet parsed.
    buf: Vec<u8>,
    pos: usize,
    filled: usize,
    parser: Parser,
}

impl Default for Connection {
    fn default() -> Self {
        Connection::new()
    }
}

impl Connection {
    /// A connection not open yet.
    pub fn new() -> Self {
        Connection {
            stream: None,
            buf: vec![0; 16 * 1024],
            pos: 0,
            filled: 0,
            parser: Parser::new(),
        }
    }

    pub fn is_open(&self) -> bool {
        self.stream.is_some()
    }

    /// Opens the connection to `addr`, closing one that was open.
    pub async fn connect(&mut self, addr: SocketAddr) -> std::io::Result<()> {
        self.close();
        self.stream = Some(open(addr).await?);
        Ok(())
    }

    /// Drops the connection and whatever it had received.
    pub fn close(&mut self) {
        self.stream = None;
        (self.pos, self.filled) = (0, 0);
    }

    /// Sends `request` (one whole request, already encoded) and reads its whole answer;
    /// `count`: whether the answer's batch verdicts are counted (see [`Answer::verdicts`]).
    pub async fn exchange(&mut self, request: &[u8], count: bool) -> Result<Answer, ExchangeError> {
        let result = self.send_and_read(request, count).await;
        if !matches!(&result, Ok(answer) if !answer.close) {
            self.close();
        }
        result
    }

    async fn send_and_read(
        &mut self,
        request: &[u8],
        count: bool,
    ) -> Result<Answer, ExchangeError> {
        let Connection {
            stream,
            buf,
            pos,
            filled,
            parser,
        } = self;
        let stream = stream.as_mut().ok_or(ExchangeError::NotConnected)?;
        stream
            .write_all(request)
            .await
            .map_err(ExchangeError::Write)?;
        parser.reset(count);
        loop {
            if *filled > *pos {
                let used = parser
                    .advance(&buf[*pos..*filled])
                    .map_err(ExchangeError::Protocol)?;
                *pos += used;
                if let Some(answer) = parser.answer() {
                    if *pos != *filled {
                        return Err(ExchangeError::Protocol(ProtocolError(
                            "bytes after the answer",
                        )));
                    }
                    (*pos, *filled) = (0, 0);
                    return Ok(answer);
                }
            }
            if *pos == *filled {
                (*pos, *filled) = (0, 0);
            } else if *filled == buf.len() {
                if *pos > 0 {
                    buf.copy_within(*pos..*filled, 0);
                    *filled -= *pos;
                    *pos = 0;
                } else if buf.len() <= MAX_HEAD {
                    // A head longer than the buffer (the parser refuses it beyond MAX_HEAD).
                    buf.resize(buf.len() * 2, 0);
                } else {
                    return Err(ExchangeError::Protocol(ProtocolError(
                        "response head too long",
                    )));
                }
            }
            let n = stream
                .read(&mut buf[*filled..])
                .await
                .map_err(ExchangeError::Read)?;
            if n == 0 {
                // The connection ended: fine only for a body that runs to the end.
                parser.eof().map_err(|_| ExchangeError::Closed)?;
                (*pos, *filled) = (0, 0);
                return parser.answer().ok_or(ExchangeError::Closed);
            }
            *filled += n;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `input` in pieces of `step` bytes the way the connection loop does, keeping unused
    /// bytes; returns the answer and the bytes left after it.
    fn parse(input: &[u8], step: usize, eof: bool) -> Result<(Answer, Vec<u8>), ProtocolError> {
        let mut parser = Parser::new();
        let mut pending = Vec::new();
        let mut fed = 0;
        loop {
            let used = parser.advance(&pending)?;
            pending.drain(..used);
            if let Some(answer) = parser.answer() {
                let mut rest = pending.clone();
                rest.extend_from_slice(&input[fed..]);
                return Ok((answer, rest));
            }
            if fed == input.len() {
                if eof {
                    parser.eof()?;
                    return Ok((parser.answer().expect("done after eof"), pending));
                }
                return Err(ProtocolError("incomplete"));
            }
            let n = step.min(input.len() - fed);
            pending.extend_from_slice(&input[fed..fed + n]);
            fed += n;
        }
    }

    fn every_step(input: &[u8], eof: bool) -> Answer {
        let (first, rest) = parse(input, input.len().max(1), eof).expect("whole");
        for step in 1..input.len() {
            let (answer, rest_n) = parse(input, step, eof).expect("in pieces");
            assert_eq!(answer, first, "step {step}");
            assert_eq!(rest_n, rest, "step {step}");
        }
        first
    }

    #[test]
    fn content_length_body() {
        let a = every_step(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\ncontent-length: 6\r\n\r\nhello\n",
            false,
        );
        assert_eq!(a.status, 200);
        assert!(!a.close);
        assert_eq!(a.body_prefix(), b"hello\n");
    }

    #[test]
    fn leaves_the_bytes_after_the_response() {
        let (a, rest) = parse(
            b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\nHTTP/1.1",
            100,
            false,
        )
        .unwrap();
        assert_eq!(a.status, 401);
        assert_eq!(rest, b"HTTP/1.1");
    }

    #[test]
    fn chunked_body_with_extensions_and_trailers() {
        let a = every_step(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, Chunked\r\n\r\n\
              4;name=value\r\n{\"ac\r\nA\r\ntive\":true\r\n0\r\nX-Trailer: 1\r\n\r\n",
            false,
        );
        assert_eq!(a.status, 200);
        assert_eq!(a.body_prefix(), b"{\"active\":true");
    }

    #[test]
    fn chunked_overrides_content_length() {
        let a = every_step(
            b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\nTransfer-Encoding: chunked\r\n\r\n\
              3\r\nabc\r\n0\r\n\r\n",
            false,
        );
        assert_eq!(a.body_prefix(), b"abc");
    }

    #[test]
    fn connection_close_and_http_1_0() {
        let a = every_step(
            b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok",
            false,
        );
        assert!(a.close);
        let a = every_step(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", false);
        assert!(a.close);
        let a = every_step(
            b"HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 2\r\n\r\nok",
            false,
        );
        assert!(!a.close);
    }

    #[test]
    fn body_until_close() {
        let a = every_step(b"HTTP/1.1 200 OK\r\n\r\nall of it", true);
        assert!(a.close);
        assert_eq!(a.body_prefix(), b"all of it");
        assert!(parse(b"HTTP/1.1 200 OK\r\n\r\nall of it", 4, false).is_err());
    }

    #[test]
    fn no_body_for_204_304_and_interim_answers_are_skipped() {
        let a = every_step(
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n",
            false,
        );
        assert_eq!(a.status, 204);
        let a = every_step(
            b"HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n",
            false,
        );
        assert_eq!(a.status, 304);
    }

    #[test]
    fn bare_line_feeds_are_accepted() {
        let a = every_step(b"HTTP/1.1 503 Busy\nContent-Length: 1\n\nx", false);
        assert_eq!(a.status, 503);
    }

    #[test]
    fn prefix_is_bounded() {
        let body = [b'a'; 100];
        let mut input = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n".to_vec();
        input.extend_from_slice(&body);
        let a = every_step(&input, false);
        assert_eq!(a.body_prefix(), &body[..PREFIX]);
    }

    #[test]
    fn refuses_broken_responses() {
        for bad in [
            &b"HTTP/2 200\r\n\r\n"[..],
            b"HTTP/1.1 20 OK\r\n\r\n",
            b"HTTP/1.1 999 What\r\n\r\n",
            b"garbage\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nno colon\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffff\r\n",
            b"HTTP/1.1 101 Switching Protocols\r\n\r\n",
        ] {
            let mut p = Parser::new();
            assert!(p.advance(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
        let mut p = Parser::new();
        assert_eq!(
            p.advance(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab"),
            Ok(40)
        );
        assert!(p.eof().is_err());
        let mut p = Parser::new();
        assert!(p.eof().is_err());
    }

    #[test]
    fn head_size_is_bounded() {
        let mut input = b"HTTP/1.1 200 OK\r\nX: ".to_vec();
        input.resize(MAX_HEAD + 10, b'a');
        let mut p = Parser::new();
        assert!(p.advance(&input).is_err());
    }
}
