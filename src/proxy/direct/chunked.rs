//! Decoding a chunked response body (RFC 9112 §7.1) from a read buffer: chunk sizes are parsed by httparse
//! (`parse_chunk_size`, as hyper does), chunk data is handed on as slices of the buffer (no copy), and
//! trailer fields are read and dropped (nginx does not pass an upstream's trailers on either).

use bytes::{Bytes, BytesMut};

/// The longest chunk-size line or trailer section accepted.
const MAX_LINE: usize = 16 << 10;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("upstream sent a malformed chunked body: {0}")]
pub struct ChunkError(&'static str);

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum State {
    #[default]
    Size,
    Data(u64),
    /// The CRLF after a chunk's data.
    DataEnd,
    Trailers,
    Done,
}

/// What the buffer gave.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    Data(Bytes),
    /// The buffer holds no more of the body: read more.
    NeedMore,
    /// The last chunk and the trailers are consumed; nothing of the next message was.
    Done,
}

#[derive(Debug, Default)]
pub struct Chunked {
    state: State,
}

impl Chunked {
    /// Decode from the front of `buf`, consuming what it uses.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Step, ChunkError> {
        loop {
            match self.state {
                State::Done => return Ok(Step::Done),
                State::Size => match httparse::parse_chunk_size(buf) {
                    Ok(httparse::Status::Complete((used, size))) => {
                        let _ = buf.split_to(used);
                        self.state = if size == 0 {
                            State::Trailers
                        } else {
                            State::Data(size)
                        };
                    }
                    Ok(httparse::Status::Partial) => return self.need_more(buf),
                    Err(_) => return Err(ChunkError("bad chunk size")),
                },
                State::Data(left) => {
                    if buf.is_empty() {
                        return Ok(Step::NeedMore);
                    }
                    let take = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
                    let left = left - take as u64;
                    self.state = if left == 0 {
                        State::DataEnd
                    } else {
                        State::Data(left)
                    };
                    return Ok(Step::Data(buf.split_to(take).freeze()));
                }
                State::DataEnd => match line_end(buf) {
                    Some(len) => {
                        let _ = buf.split_to(len);
                        self.state = State::Size;
                    }
                    None if buf.len() < 2 => return Ok(Step::NeedMore),
                    None => return Err(ChunkError("chunk data longer than its size")),
                },
                State::Trailers => {
                    if let Some(len) = line_end(buf) {
                        // No trailer fields: the empty line ends the body.
                        let _ = buf.split_to(len);
                        self.state = State::Done;
                        continue;
                    }
                    let mut fields = [httparse::EMPTY_HEADER; 32];
                    match httparse::parse_headers(buf, &mut fields) {
                        Ok(httparse::Status::Complete((used, _))) => {
                            let _ = buf.split_to(used);
                            self.state = State::Done;
                        }
                        Ok(httparse::Status::Partial) => return self.need_more(buf),
                        Err(_) => return Err(ChunkError("bad trailer section")),
                    }
                }
            }
        }
    }

    fn need_more(&self, buf: &BytesMut) -> Result<Step, ChunkError> {
        if buf.len() > MAX_LINE {
            return Err(ChunkError("chunk-size line or trailers too long"));
        }
        Ok(Step::NeedMore)
    }
}

/// `Some(length)` when `buf` starts with a line end (CRLF, or a bare LF).
fn line_end(buf: &[u8]) -> Option<usize> {
    match buf {
        [b'\r', b'\n', ..] => Some(2),
        [b'\n', ..] => Some(1),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feed `input` in pieces of `step` bytes; the decoded data, and what was left in the buffer.
    fn decode_in_pieces(input: &[u8], step: usize) -> Result<(Vec<u8>, Vec<u8>), ChunkError> {
        let mut decoder = Chunked::default();
        let mut buf = BytesMut::new();
        let mut data = Vec::new();
        let mut pieces = input.chunks(step);
        loop {
            match decoder.decode(&mut buf)? {
                Step::Data(bytes) => data.extend_from_slice(&bytes),
                Step::Done => return Ok((data, buf.to_vec())),
                Step::NeedMore => match pieces.next() {
                    Some(piece) => buf.extend_from_slice(piece),
                    None => return Err(ChunkError("input ended")),
                },
            }
        }
    }

    #[test]
    fn chunks_decode_the_same_however_the_bytes_arrive() {
        let body = b"5\r\nhello\r\n1;ext=1\r\n,\r\n6\r\n world\r\n0\r\n\r\nNEXT";
        for step in [1, 2, 3, 7, body.len()] {
            let (data, rest) = decode_in_pieces(body, step).expect("valid");
            assert_eq!(data, b"hello, world", "pieces of {step}");
            assert_eq!(
                &rest[..],
                &b"NEXT"[..rest.len()],
                "pieces of {step}: read too far"
            );
        }
    }

    #[test]
    fn trailers_are_consumed_and_dropped() {
        let (data, rest) = decode_in_pieces(b"2\r\nok\r\n0\r\nDigest: x\r\nMore: y\r\n\r\nNEXT", 4)
            .expect("valid");
        assert_eq!(data, b"ok");
        assert!(b"NEXT".starts_with(&rest));
    }

    #[test]
    fn malformed_chunks_are_errors() {
        for bad in [
            &b"zz\r\nhello\r\n0\r\n\r\n"[..],
            b"2\r\nhello\r\n0\r\n\r\n",
            b"ffffffffffffffffff\r\n",
        ] {
            assert!(
                decode_in_pieces(bad, 64).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        let endless_size = vec![b'1'; MAX_LINE + 1];
        assert!(decode_in_pieces(&endless_size, MAX_LINE + 1).is_err());
    }
}
