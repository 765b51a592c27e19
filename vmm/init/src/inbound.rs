//! Host frames as they arrive on the agent connection, parsed so that stdin bytes are never
//! copied in user space: a frame's header is read on its own, a `Stdin` payload straight from
//! the socket into the stdin buffer, and only the small control payloads (`Resize`,
//! `Signal`, …) are gathered and decoded. Why not a [`FrameBuffer`]: on nested PVM hosts a
//! large `memcpy` in a guest process can come out with 16-byte blocks zeroed (see the README,
//! VM mode), and a frame buffer copies every payload three times.
//!
//! [`FrameBuffer`]: vcompare_spec::agent::FrameBuffer

use vcompare_spec::agent::{Kind, Message, ProtocolError, HEADER_BYTES, MAX_PAYLOAD, STREAM_CHUNK};

use crate::sys;

/// Where the reader stands in the current frame.
#[derive(Debug)]
enum Body {
    /// Reading the 5-byte header.
    Header,
    /// Inside a `Stdin` payload with this many bytes to come.
    Stdin { left: usize },
    /// Gathering a control message's payload.
    Control { len: usize, frame: Vec<u8> },
}

/// Why a read gave no message.
#[derive(Debug)]
pub enum ReadError {
    /// The host closed the connection.
    Eof,
    /// Nothing to read now (EAGAIN/EINTR).
    Again,
    /// The connection failed (errno).
    Io(i32),
    /// The bytes are not the protocol.
    Protocol(ProtocolError),
}

/// The frame parser of one connection.
#[derive(Debug)]
pub struct Inbound {
    hdr: [u8; HEADER_BYTES],
    got: usize,
    body: Body,
}

impl Default for Inbound {
    fn default() -> Self {
        Inbound {
            hdr: [0; HEADER_BYTES],
            got: 0,
            body: Body::Header,
        }
    }
}

impl Inbound {
    /// One `read` from `fd`: stdin bytes are appended to `stdin` (or dropped when `keep` is
    /// false: the process's stdin is closed); a completed control message is returned.
    pub fn read(
        &mut self,
        fd: i32,
        stdin: &mut Vec<u8>,
        keep: bool,
    ) -> Result<Option<Message>, ReadError> {
        let got = match &mut self.body {
            Body::Header => sys::read(fd, &mut self.hdr[self.got..]),
            Body::Stdin { left } => {
                let at = stdin.len();
                stdin.resize(at + (*left).min(STREAM_CHUNK), 0);
                let r = sys::read(fd, &mut stdin[at..]);
                let n = *r.as_ref().unwrap_or(&0);
                stdin.truncate(if keep { at + n } else { at });
                r
            }
            Body::Control { len, frame } => {
                let at = frame.len();
                frame.resize(HEADER_BYTES + *len, 0);
                let r = sys::read(fd, &mut frame[at..]);
                frame.truncate(at + *r.as_ref().unwrap_or(&0));
                r
            }
        };
        match got {
            Ok(0) => Err(ReadError::Eof),
            Ok(n) => self.advance(n).map_err(ReadError::Protocol),
            Err(libc::EAGAIN) | Err(libc::EINTR) => Err(ReadError::Again),
            Err(e) => Err(ReadError::Io(e)),
        }
    }

    /// Feeds bytes already received (what the handshake read behind the request) through
    /// the same parser; control messages go to `on_message`.
    pub fn feed(
        &mut self,
        mut bytes: &[u8],
        stdin: &mut Vec<u8>,
        keep: bool,
        mut on_message: impl FnMut(Message),
    ) -> Result<(), ProtocolError> {
        while !bytes.is_empty() {
            let n = match &mut self.body {
                Body::Header => {
                    let n = (HEADER_BYTES - self.got).min(bytes.len());
                    self.hdr[self.got..self.got + n].copy_from_slice(&bytes[..n]);
                    n
                }
                Body::Stdin { left } => {
                    let n = (*left).min(bytes.len());
                    if keep {
                        stdin.extend_from_slice(&bytes[..n]);
                    }
                    n
                }
                Body::Control { len, frame } => {
                    let n = (HEADER_BYTES + *len - frame.len()).min(bytes.len());
                    frame.extend_from_slice(&bytes[..n]);
                    n
                }
            };
            bytes = &bytes[n..];
            if let Some(m) = self.advance(n)? {
                on_message(m);
            }
        }
        Ok(())
    }

    /// Accounts for `n` bytes just stored by [`Inbound::read`] or [`Inbound::feed`].
    fn advance(&mut self, n: usize) -> Result<Option<Message>, ProtocolError> {
        match &mut self.body {
            Body::Header => {
                self.got += n;
                if self.got < HEADER_BYTES {
                    return Ok(None);
                }
                self.got = 0;
                let len = u32::from_le_bytes(self.hdr[..4].try_into().expect("4 bytes")) as usize;
                if len > MAX_PAYLOAD {
                    return Err(ProtocolError::TooLarge(len));
                }
                if self.hdr[4] == Kind::Stdin as u8 {
                    if len > 0 {
                        self.body = Body::Stdin { left: len };
                    }
                    return Ok(None);
                }
                let mut frame = Vec::with_capacity(HEADER_BYTES + len);
                frame.extend_from_slice(&self.hdr);
                self.body = Body::Control { len, frame };
                self.complete_control()
            }
            Body::Stdin { left } => {
                *left -= n;
                if *left == 0 {
                    self.body = Body::Header;
                }
                Ok(None)
            }
            Body::Control { .. } => self.complete_control(),
        }
    }

    /// The control message, once its whole frame is gathered.
    fn complete_control(&mut self) -> Result<Option<Message>, ProtocolError> {
        let Body::Control { len, frame } = &self.body else {
            return Ok(None);
        };
        if frame.len() < HEADER_BYTES + *len {
            return Ok(None);
        }
        let m = Message::decode(frame)?.map(|(m, _)| m);
        self.body = Body::Header;
        Ok(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vcompare_spec::agent::WindowSize;

    fn stream() -> Vec<u8> {
        [
            Message::Stdin(b"hello ".to_vec()),
            Message::Resize(WindowSize { rows: 3, cols: 4 }),
            Message::Stdin(Vec::new()),
            Message::Stdin((0..100_000u32).map(|i| i as u8).collect()),
            Message::StdinClosed,
        ]
        .iter()
        .flat_map(|m| m.encode())
        .collect()
    }

    fn want_stdin() -> Vec<u8> {
        let mut v = b"hello ".to_vec();
        v.extend((0..100_000u32).map(|i| i as u8));
        v
    }

    #[test]
    fn fed_in_any_split_the_stdin_bytes_and_messages_come_out_whole() {
        let s = stream();
        for split in [1, 2, 5, 7, 4096, s.len()] {
            let (mut inb, mut stdin, mut msgs) = (Inbound::default(), Vec::new(), Vec::new());
            for part in s.chunks(split) {
                inb.feed(part, &mut stdin, true, |m| msgs.push(m)).unwrap();
            }
            assert_eq!(stdin, want_stdin(), "split {split}");
            assert_eq!(
                msgs,
                [
                    Message::Resize(WindowSize { rows: 3, cols: 4 }),
                    Message::StdinClosed
                ]
            );
        }
    }

    #[test]
    fn read_from_a_socket_lands_stdin_in_place() {
        use std::io::Write;
        use std::os::fd::AsRawFd;
        let (mut a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        let s = stream();
        let writer = std::thread::spawn(move || a.write_all(&s).unwrap());
        let (mut inb, mut stdin, mut msgs) = (Inbound::default(), Vec::new(), Vec::new());
        loop {
            match inb.read(b.as_raw_fd(), &mut stdin, true) {
                Ok(Some(m)) => {
                    let end = m == Message::StdinClosed;
                    msgs.push(m);
                    if end {
                        break;
                    }
                }
                Ok(None) | Err(ReadError::Again) => {}
                Err(e) => panic!("{e:?}"),
            }
        }
        writer.join().unwrap();
        assert_eq!(stdin, want_stdin());
        assert_eq!(msgs.len(), 2);
    }

    #[test]
    fn stdin_for_a_closed_sink_is_dropped_and_bad_frames_are_errors() {
        let (mut inb, mut stdin) = (Inbound::default(), Vec::new());
        inb.feed(&stream(), &mut stdin, false, |_| {}).unwrap();
        assert!(stdin.is_empty());
        let mut inb = Inbound::default();
        let r = inb.feed(&[0xff, 0xff, 0xff, 0x7f, 10], &mut stdin, true, |_| {});
        assert!(matches!(r, Err(ProtocolError::TooLarge(_))));
        let mut inb = Inbound::default();
        let r = inb.feed(&[0, 0, 0, 0, 99], &mut stdin, true, |_| {});
        assert!(matches!(r, Err(ProtocolError::UnknownKind(99))));
    }
}
