//! The host ↔ guest-agent protocol: what `vcompare exec`, `run -i/-t` and `stop` say to the
//! agent in the guest init over virtio-vsock, declared once for both ends (the CLI and the
//! static init).
//!
//! A connection carries one conversation. Each side first sends [`Message::Hello`] with its
//! [`PROTOCOL_VERSION`]; the host then sends one request ([`Message::Exec`],
//! [`Message::Attach`] or [`Message::SignalEntrypoint`]) and the two stream the rest.
//!
//! On the wire every message is a frame: a little-endian `u32` payload length, one kind byte
//! (the [`Kind`] numbers, never reused) and the payload. Stream payloads ([`Message::Stdin`],
//! [`Message::Stdout`], [`Message::Stderr`]) are the raw bytes, so `exec` output costs no
//! encoding; the other payloads are JSON of the typed structs below, so a field can be added
//! without a new kind. A frame longer than [`MAX_PAYLOAD`], an unknown kind or a payload that
//! does not parse is a [`ProtocolError`], never a panic.

use std::io::{Read, Write};

use crate::ProcessSpec;

/// The vsock port the agent listens on in the guest.
pub const AGENT_PORT: u32 = 1024;
/// The version both ends announce in [`Hello`]; a different version from the other end
/// ends the conversation with a clear error (the image disk carries an older init).
pub const PROTOCOL_VERSION: u32 = 1;
/// The largest payload a frame may carry (stream chunks are far smaller: 32 KiB).
pub const MAX_PAYLOAD: usize = 1 << 20;
/// The size stream data is chunked into by both ends.
pub const STREAM_CHUNK: usize = 32 * 1024;
/// Bytes before the payload: length (4) and kind (1).
pub const HEADER_BYTES: usize = 5;

/// The first message of each side.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Hello {
    /// [`PROTOCOL_VERSION`] of the sender.
    pub version: u32,
    /// Who speaks: `vcompare` (the host) or `vcompare-init` (the agent).
    pub peer: String,
}

impl Hello {
    /// This build's hello as `peer`.
    pub fn new(peer: &str) -> Hello {
        Hello {
            version: PROTOCOL_VERSION,
            peer: peer.to_string(),
        }
    }
}

/// A terminal's size, as `TIOCSWINSZ` takes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct WindowSize {
    /// Rows.
    pub rows: u16,
    /// Columns.
    pub cols: u16,
}

/// How the process's standard streams reach the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct StdioMode {
    /// `-t`: a pseudo-terminal allocated in the guest (its devpts) is the process's
    /// controlling terminal and stdin/stdout/stderr; output arrives as [`Message::Stdout`].
    pub tty: bool,
    /// `-i`: stdin comes from [`Message::Stdin`]; otherwise it is `/dev/null`.
    pub stdin: bool,
    /// The host terminal's size at the start (with `tty`).
    pub window: Option<WindowSize>,
}

/// `vcompare exec`: start a second process in the guest.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct ExecRequest {
    /// What to run (argv looked up in the process's `PATH`), as whom and where.
    pub process: ProcessSpec,
    /// How its streams are connected.
    pub stdio: StdioMode,
}

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ExitStatus {
    /// Exit code (0 when killed by a signal).
    pub code: i32,
    /// The signal that killed it, 0 if it exited.
    pub signal: i32,
}

impl ExitStatus {
    /// The status a shell reports: the code, or 128+N for signal N.
    pub fn shell_code(self) -> i32 {
        if self.signal != 0 {
            128 + self.signal
        } else {
            self.code
        }
    }
}

/// Why a request was not carried out.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Failure {
    /// One plain sentence for the user.
    pub message: String,
    /// The exit status the CLI returns: 127 command not found, 126 not executable, 125 the
    /// request itself failed (as docker does).
    pub exit_code: i32,
}

/// One message of the protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// Both directions, first: version and peer.
    Hello(Hello),
    /// host → agent: start a process and stream its stdio on this connection.
    Exec(ExecRequest),
    /// host → agent: the run's entrypoint was started with its stdio on the agent
    /// (`run -i/-t` in a VM): the init starts it now, with this stdio, on this connection.
    Attach(StdioMode),
    /// host → agent: send this signal to the entrypoint (`stop`); answered by [`Message::Done`].
    SignalEntrypoint(i32),
    /// host → agent: bytes for the process's stdin.
    Stdin(Vec<u8>),
    /// host → agent: the host's stdin ended (the agent closes the process's stdin; with a
    /// tty it sends the terminal's end-of-file character).
    StdinClosed,
    /// host → agent: the host terminal was resized.
    Resize(WindowSize),
    /// host → agent: deliver this signal to the process (the host's SIGINT, SIGTERM, …).
    Signal(i32),
    /// agent → host: the process runs, with this pid in the guest.
    Started(u32),
    /// agent → host: the process's stdout (with a tty: the terminal's output).
    Stdout(Vec<u8>),
    /// agent → host: the process's stderr (never with a tty).
    Stderr(Vec<u8>),
    /// agent → host, last: the process ended and all its output was sent.
    Exited(ExitStatus),
    /// agent → host, last: the request failed.
    Failed(Failure),
    /// agent → host: the request was carried out (for [`Message::SignalEntrypoint`]).
    Done,
}

/// The kind byte of each message; numbers are part of the protocol and never reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// [`Message::Hello`].
    Hello = 1,
    /// [`Message::Exec`].
    Exec = 2,
    /// [`Message::Attach`].
    Attach = 3,
    /// [`Message::SignalEntrypoint`].
    SignalEntrypoint = 4,
    /// [`Message::Stdin`].
    Stdin = 5,
    /// [`Message::StdinClosed`].
    StdinClosed = 6,
    /// [`Message::Resize`].
    Resize = 7,
    /// [`Message::Signal`].
    Signal = 8,
    /// [`Message::Started`].
    Started = 9,
    /// [`Message::Stdout`].
    Stdout = 10,
    /// [`Message::Stderr`].
    Stderr = 11,
    /// [`Message::Exited`].
    Exited = 12,
    /// [`Message::Failed`].
    Failed = 13,
    /// [`Message::Done`].
    Done = 14,
}

impl Kind {
    const ALL: [Kind; 14] = [
        Kind::Hello,
        Kind::Exec,
        Kind::Attach,
        Kind::SignalEntrypoint,
        Kind::Stdin,
        Kind::StdinClosed,
        Kind::Resize,
        Kind::Signal,
        Kind::Started,
        Kind::Stdout,
        Kind::Stderr,
        Kind::Exited,
        Kind::Failed,
        Kind::Done,
    ];

    fn from_byte(b: u8) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| *k as u8 == b)
    }
}

/// Why bytes are not a message.
#[derive(Debug)]
pub enum ProtocolError {
    /// Reading or writing the connection failed.
    Io(std::io::Error),
    /// The connection ended inside a frame.
    Truncated,
    /// A frame announced more than [`MAX_PAYLOAD`] bytes.
    TooLarge(usize),
    /// An unknown kind byte.
    UnknownKind(u8),
    /// The payload of a known kind does not parse.
    BadPayload {
        /// Its kind.
        kind: u8,
        /// What the parser said.
        reason: String,
    },
}

impl std::fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProtocolError::Io(e) => write!(f, "agent connection: {e}"),
            ProtocolError::Truncated => f.write_str("agent connection ended inside a message"),
            ProtocolError::TooLarge(n) => {
                write!(
                    f,
                    "agent message of {n} bytes is over the {MAX_PAYLOAD}-byte limit"
                )
            }
            ProtocolError::UnknownKind(k) => write!(f, "unknown agent message kind {k}"),
            ProtocolError::BadPayload { kind, reason } => {
                write!(f, "malformed agent message (kind {kind}): {reason}")
            }
        }
    }
}

impl std::error::Error for ProtocolError {}

impl From<std::io::Error> for ProtocolError {
    fn from(e: std::io::Error) -> Self {
        ProtocolError::Io(e)
    }
}

fn json<T: serde::Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).expect("protocol structs serialise")
}

impl Message {
    /// Its kind byte.
    pub fn kind(&self) -> Kind {
        match self {
            Message::Hello(_) => Kind::Hello,
            Message::Exec(_) => Kind::Exec,
            Message::Attach(_) => Kind::Attach,
            Message::SignalEntrypoint(_) => Kind::SignalEntrypoint,
            Message::Stdin(_) => Kind::Stdin,
            Message::StdinClosed => Kind::StdinClosed,
            Message::Resize(_) => Kind::Resize,
            Message::Signal(_) => Kind::Signal,
            Message::Started(_) => Kind::Started,
            Message::Stdout(_) => Kind::Stdout,
            Message::Stderr(_) => Kind::Stderr,
            Message::Exited(_) => Kind::Exited,
            Message::Failed(_) => Kind::Failed,
            Message::Done => Kind::Done,
        }
    }

    /// The whole frame: header and payload.
    pub fn encode(&self) -> Vec<u8> {
        let payload: Vec<u8> = match self {
            Message::Hello(h) => json(h),
            Message::Exec(r) => json(r),
            Message::Attach(s) => json(s),
            Message::SignalEntrypoint(s) | Message::Signal(s) => json(s),
            Message::Stdin(b) | Message::Stdout(b) | Message::Stderr(b) => b.clone(),
            Message::StdinClosed | Message::Done => Vec::new(),
            Message::Resize(w) => json(w),
            Message::Started(p) => json(p),
            Message::Exited(s) => json(s),
            Message::Failed(f) => json(f),
        };
        let mut frame = Vec::with_capacity(HEADER_BYTES + payload.len());
        frame.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        frame.push(self.kind() as u8);
        frame.extend_from_slice(&payload);
        frame
    }

    /// The message at the start of `buf` and the bytes it took, `Ok(None)` if `buf` holds
    /// only part of a frame (read more), or why the bytes are not a message.
    pub fn decode(buf: &[u8]) -> Result<Option<(Message, usize)>, ProtocolError> {
        if buf.len() < HEADER_BYTES {
            return Ok(None);
        }
        let len = u32::from_le_bytes(buf[..4].try_into().expect("4 bytes")) as usize;
        if len > MAX_PAYLOAD {
            return Err(ProtocolError::TooLarge(len));
        }
        let kind = Kind::from_byte(buf[4]).ok_or(ProtocolError::UnknownKind(buf[4]))?;
        let Some(payload) = buf.get(HEADER_BYTES..HEADER_BYTES + len) else {
            return Ok(None);
        };
        Ok(Some((
            Message::from_payload(kind, payload)?,
            HEADER_BYTES + len,
        )))
    }

    fn from_payload(kind: Kind, p: &[u8]) -> Result<Message, ProtocolError> {
        fn parse<T: serde::de::DeserializeOwned>(kind: Kind, p: &[u8]) -> Result<T, ProtocolError> {
            serde_json::from_slice(p).map_err(|e| ProtocolError::BadPayload {
                kind: kind as u8,
                reason: e.to_string(),
            })
        }
        let empty = |m: Message| {
            if p.is_empty() {
                Ok(m)
            } else {
                Err(ProtocolError::BadPayload {
                    kind: kind as u8,
                    reason: format!("{} unexpected payload bytes", p.len()),
                })
            }
        };
        Ok(match kind {
            Kind::Hello => Message::Hello(parse(kind, p)?),
            Kind::Exec => Message::Exec(parse(kind, p)?),
            Kind::Attach => Message::Attach(parse(kind, p)?),
            Kind::SignalEntrypoint => Message::SignalEntrypoint(parse(kind, p)?),
            Kind::Stdin => Message::Stdin(p.to_vec()),
            Kind::StdinClosed => empty(Message::StdinClosed)?,
            Kind::Resize => Message::Resize(parse(kind, p)?),
            Kind::Signal => Message::Signal(parse(kind, p)?),
            Kind::Started => Message::Started(parse(kind, p)?),
            Kind::Stdout => Message::Stdout(p.to_vec()),
            Kind::Stderr => Message::Stderr(p.to_vec()),
            Kind::Exited => Message::Exited(parse(kind, p)?),
            Kind::Failed => Message::Failed(parse(kind, p)?),
            Kind::Done => empty(Message::Done)?,
        })
    }

    /// Writes the frame to `w` in one `write_all`.
    pub fn write_to(&self, w: &mut impl Write) -> std::io::Result<()> {
        w.write_all(&self.encode())
    }

    /// Reads one message from a blocking reader; `Ok(None)` at a clean end of the stream
    /// (between frames).
    pub fn read_from(r: &mut impl Read) -> Result<Option<Message>, ProtocolError> {
        let mut header = [0u8; HEADER_BYTES];
        let mut got = 0;
        while got < HEADER_BYTES {
            match r.read(&mut header[got..]) {
                Ok(0) if got == 0 => return Ok(None),
                Ok(0) => return Err(ProtocolError::Truncated),
                Ok(n) => got += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
        let len = u32::from_le_bytes(header[..4].try_into().expect("4 bytes")) as usize;
        if len > MAX_PAYLOAD {
            return Err(ProtocolError::TooLarge(len));
        }
        let kind = Kind::from_byte(header[4]).ok_or(ProtocolError::UnknownKind(header[4]))?;
        let mut payload = vec![0u8; len];
        r.read_exact(&mut payload).map_err(|e| match e.kind() {
            std::io::ErrorKind::UnexpectedEof => ProtocolError::Truncated,
            _ => ProtocolError::Io(e),
        })?;
        Message::from_payload(kind, &payload).map(Some)
    }
}

/// Accumulates bytes from a non-blocking source and yields whole messages (the agent's
/// poll loop reads whatever arrived; frames may be split anywhere).
#[derive(Debug, Default)]
pub struct FrameBuffer {
    buf: Vec<u8>,
}

impl FrameBuffer {
    /// Appends received bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next whole message, if one has arrived.
    pub fn next_message(&mut self) -> Result<Option<Message>, ProtocolError> {
        match Message::decode(&self.buf)? {
            Some((m, used)) => {
                self.buf.drain(..used);
                Ok(Some(m))
            }
            None => Ok(None),
        }
    }

    /// Takes the bytes not yet returned as messages (an unfinished frame), for a parser
    /// that continues the stream.
    pub fn take_bytes(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.buf)
    }

    /// True if bytes of an unfinished frame are held (an end of stream now is truncation).
    pub fn has_partial(&self) -> bool {
        !self.buf.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all() -> Vec<Message> {
        vec![
            Message::Hello(Hello::new("vcompare")),
            Message::Exec(ExecRequest {
                process: ProcessSpec {
                    args: vec!["sh".into(), "-c".into(), "echo hi".into()],
                    env: vec!["A=1".into()],
                    cwd: "/tmp".into(),
                    uid: 1000,
                    gid: 100,
                },
                stdio: StdioMode {
                    tty: true,
                    stdin: true,
                    window: Some(WindowSize { rows: 24, cols: 80 }),
                },
            }),
            Message::Attach(StdioMode::default()),
            Message::SignalEntrypoint(15),
            Message::Stdin(b"abc\0\xff".to_vec()),
            Message::StdinClosed,
            Message::Resize(WindowSize {
                rows: 50,
                cols: 132,
            }),
            Message::Signal(2),
            Message::Started(42),
            Message::Stdout(vec![0; 70_000]),
            Message::Stderr(Vec::new()),
            Message::Exited(ExitStatus { code: 0, signal: 9 }),
            Message::Failed(Failure {
                message: "nope".into(),
                exit_code: 127,
            }),
            Message::Done,
        ]
    }

    #[test]
    fn every_message_round_trips_whole_and_byte_by_byte() {
        let msgs = all();
        assert_eq!(msgs.len(), Kind::ALL.len(), "one sample per kind");
        let stream: Vec<u8> = msgs.iter().flat_map(|m| m.encode()).collect();
        let mut fb = FrameBuffer::default();
        let mut out = Vec::new();
        for b in &stream {
            fb.push(std::slice::from_ref(b));
            while let Some(m) = fb.next_message().unwrap() {
                out.push(m);
            }
        }
        assert_eq!(out, msgs);
        assert!(!fb.has_partial());
        let mut r = &stream[..];
        let mut back = Vec::new();
        while let Some(m) = Message::read_from(&mut r).unwrap() {
            back.push(m);
        }
        assert_eq!(back, msgs);
    }

    #[test]
    fn stream_payloads_are_raw_bytes() {
        let f = Message::Stdout(b"hello".to_vec()).encode();
        assert_eq!(
            f,
            [5, 0, 0, 0, Kind::Stdout as u8, b'h', b'e', b'l', b'l', b'o']
        );
    }

    #[test]
    fn malformed_frames_are_errors() {
        let too_big = [0xff, 0xff, 0xff, 0x7f, Kind::Stdout as u8];
        assert!(matches!(
            Message::decode(&too_big),
            Err(ProtocolError::TooLarge(_))
        ));
        assert!(matches!(
            Message::decode(&[0, 0, 0, 0, 99]),
            Err(ProtocolError::UnknownKind(99))
        ));
        let bad = [3, 0, 0, 0, Kind::Exec as u8, b'{', b'x', b'}'];
        assert!(matches!(
            Message::decode(&bad),
            Err(ProtocolError::BadPayload { .. })
        ));
        let extra = [1, 0, 0, 0, Kind::Done as u8, 0];
        assert!(matches!(
            Message::decode(&extra),
            Err(ProtocolError::BadPayload { .. })
        ));
        let mut cut = &Message::Stdout(b"hello".to_vec()).encode()[..7];
        assert!(matches!(
            Message::read_from(&mut cut),
            Err(ProtocolError::Truncated)
        ));
        assert_eq!(Message::decode(&[1, 0]).unwrap(), None);
    }

    #[test]
    fn shell_code_of_a_signal_is_128_plus() {
        assert_eq!(
            ExitStatus {
                code: 0,
                signal: 15
            }
            .shell_code(),
            143
        );
        assert_eq!(ExitStatus { code: 5, signal: 0 }.shell_code(), 5);
    }
}
