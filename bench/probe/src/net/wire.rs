//! The 16-byte header a client sends first on every connection, so one server port serves
//! both measurements and the sizes are the client's choice (the harness sets them once, for
//! every path). A fixed binary layout, big-endian: magic `VCNP`, version, mode, two reserved
//! bytes, request size, response size (bulk: chunk size, 0).

use std::io::{Read, Write};

use super::error::NetError;

/// First bytes of every connection: rejects strangers (a port scan, another service).
pub const MAGIC: [u8; 4] = *b"VCNP";
/// Bumped when the exchange after the header changes; a server refuses other versions.
pub const VERSION: u8 = 1;
/// Header length in bytes.
pub const HEADER_LEN: usize = 16;
/// Largest request or response a server accepts (it allocates both): 16 MiB.
pub const MAX_MESSAGE: u32 = 16 << 20;

/// What the connection measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Request/response transactions until the client closes.
    RequestResponse,
    /// The client streams until it shuts down writing; the server answers with the count.
    Stream,
}

impl Mode {
    fn code(self) -> u8 {
        match self {
            Mode::RequestResponse => 1,
            Mode::Stream => 2,
        }
    }
}

/// The decoded header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Which measurement follows.
    pub mode: Mode,
    /// Request bytes (request/response) or the client's write size (stream).
    pub request_bytes: u32,
    /// Response bytes (request/response); 0 for a stream.
    pub response_bytes: u32,
}

impl Header {
    /// The 16 bytes on the wire.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[..4].copy_from_slice(&MAGIC);
        b[4] = VERSION;
        b[5] = self.mode.code();
        b[8..12].copy_from_slice(&self.request_bytes.to_be_bytes());
        b[12..16].copy_from_slice(&self.response_bytes.to_be_bytes());
        b
    }

    /// Parses and checks 16 header bytes: magic, version, mode, sizes within bounds.
    pub fn decode(b: &[u8; HEADER_LEN]) -> Result<Header, NetError> {
        if b[..4] != MAGIC {
            return Err(NetError::Protocol(format!(
                "bad magic {:02x?} (not a probe net-client)",
                &b[..4]
            )));
        }
        if b[4] != VERSION {
            return Err(NetError::Protocol(format!(
                "client speaks version {}, this server {VERSION}",
                b[4]
            )));
        }
        let mode = match b[5] {
            1 => Mode::RequestResponse,
            2 => Mode::Stream,
            m => return Err(NetError::Protocol(format!("unknown mode {m}"))),
        };
        let word = |i: usize| u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let h = Header {
            mode,
            request_bytes: word(8),
            response_bytes: word(12),
        };
        let ok = |n: u32| (1..=MAX_MESSAGE).contains(&n);
        let sizes_ok = match mode {
            Mode::RequestResponse => ok(h.request_bytes) && ok(h.response_bytes),
            Mode::Stream => ok(h.request_bytes),
        };
        if !sizes_ok {
            return Err(NetError::Protocol(format!(
                "sizes {}/{} out of 1..={MAX_MESSAGE}",
                h.request_bytes, h.response_bytes
            )));
        }
        Ok(h)
    }

    /// Sends the header.
    pub fn write_to(&self, w: &mut impl Write) -> Result<(), NetError> {
        w.write_all(&self.encode())
            .map_err(NetError::io("sending the header"))
    }

    /// Receives and checks a header; `Ok(None)` if the peer closed before sending one (a
    /// connect-only probe such as a readiness check).
    pub fn read_from(r: &mut impl Read) -> Result<Option<Header>, NetError> {
        let mut b = [0u8; HEADER_LEN];
        match read_full(r, &mut b).map_err(NetError::io("reading the header"))? {
            Filled::Eof => Ok(None),
            Filled::Full => Header::decode(&b).map(Some),
        }
    }
}

/// How [`read_full`] ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Filled {
    /// The buffer is full.
    Full,
    /// The peer closed before the first byte: a clean end between messages.
    Eof,
}

/// Fills `buf` completely; EOF before the first byte is a clean [`Filled::Eof`], EOF after
/// it an `UnexpectedEof` error (a message cut in half is a broken path, not an end).
pub fn read_full(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<Filled> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) if got == 0 => return Ok(Filled::Eof),
            Ok(0) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!("peer closed after {got} of {} bytes", buf.len()),
                ))
            }
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(Filled::Full)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips() {
        for h in [
            Header {
                mode: Mode::RequestResponse,
                request_bytes: 100,
                response_bytes: 200,
            },
            Header {
                mode: Mode::Stream,
                request_bytes: 128 << 10,
                response_bytes: 0,
            },
        ] {
            assert_eq!(Header::decode(&h.encode()).unwrap(), h);
        }
    }

    #[test]
    fn header_rejects_strangers_and_bad_sizes() {
        let good = Header {
            mode: Mode::RequestResponse,
            request_bytes: 1,
            response_bytes: 1,
        }
        .encode();
        let mut b = good;
        b[0] = b'G';
        assert!(Header::decode(&b).is_err());
        let mut b = good;
        b[4] = 9;
        assert!(Header::decode(&b).is_err());
        let mut b = good;
        b[5] = 3;
        assert!(Header::decode(&b).is_err());
        let mut b = good;
        b[12..16].copy_from_slice(&0u32.to_be_bytes());
        assert!(Header::decode(&b).is_err());
        let mut b = good;
        b[8..12].copy_from_slice(&(MAX_MESSAGE + 1).to_be_bytes());
        assert!(Header::decode(&b).is_err());
    }

    #[test]
    fn read_full_tells_clean_end_from_cut_message() {
        let mut buf = [0u8; 4];
        assert_eq!(read_full(&mut &b""[..], &mut buf).unwrap(), Filled::Eof);
        assert_eq!(
            read_full(&mut &b"abcd"[..], &mut buf).unwrap(),
            Filled::Full
        );
        assert_eq!(&buf, b"abcd");
        let e = read_full(&mut &b"ab"[..], &mut buf).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof);
    }

    #[test]
    fn header_read_of_closed_connection_is_none() {
        assert!(Header::read_from(&mut &b""[..]).unwrap().is_none());
    }
}
