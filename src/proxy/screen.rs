//! HTTP/1 request-head screening: the checks nginx makes on a request head that hyper does not, decided on
//! the raw bytes before hyper parses them, and the body framing that tells where the next head starts.
//!
//! Pure: bytes in, verdicts out. [`crate::proxy::client_io`] feeds it and acts on the verdicts.
//!
//! Why on raw bytes: hyper follows RFC 9112 §6.3 for a request with both `Content-Length` and
//! `Transfer-Encoding: chunked` (chunked wins, the connection closes after the response) and *removes*
//! `Content-Length` from the parsed headers, so the request handler cannot see that both were sent. nginx
//! refuses such a request with 400, and so must certgate (a front end that disagrees with its back end about
//! where a request ends is the root of request smuggling). The same holds for a repeated `Content-Length`
//! with equal values, which hyper silently merges.
//!
//! What hyper already refuses is left to hyper (the head is passed through unjudged and hyper answers):
//! differing `Content-Length` values, a `Content-Length` that is not a number, `Transfer-Encoding` on
//! HTTP/1.0, a `Transfer-Encoding` whose last coding is not `chunked`, obs-fold, spaces in or after a header
//! name, NUL and other bytes not allowed in a request line — all 400 from hyper, connection closed.
//!
//! Refused here (nginx's answers, except where noted):
//!
//! | head | status |
//! | --- | --- |
//! | `Content-Length` and `Transfer-Encoding` | 400 |
//! | `Content-Length` twice (even with equal values) | 400 |
//! | `Transfer-Encoding` twice | 400 |
//! | `Transfer-Encoding` other than exactly `chunked` (`gzip, chunked`) | 501 |
//! | `Host` twice | 400 |
//! | absolute-form target with user information (`http://u@host/`) | 400 |
//! | request line longer than one header buffer | 414 |
//! | header line longer than one header buffer | 431 (nginx: 400) |
//! | head longer than all header buffers together | 431 (nginx: 400) |

/// hyper's default limit on the number of header lines; a head with more is left to hyper (431).
pub const MAX_HEADERS: usize = 100;

/// The HTTP/2 connection preface; a connection starting with it is not screened.
pub const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// nginx's `large_client_header_buffers`: every line of a head must fit one buffer, the head all of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeaderBuffers {
    pub number: usize,
    pub size: usize,
}

impl HeaderBuffers {
    /// The largest head accepted, in bytes.
    pub fn total(&self) -> usize {
        self.number.saturating_mul(self.size)
    }
}

impl Default for HeaderBuffers {
    /// nginx's default, `4 8k`.
    fn default() -> Self {
        Self {
            number: 4,
            size: 8 << 10,
        }
    }
}

impl std::str::FromStr for HeaderBuffers {
    type Err = String;

    /// nginx syntax: `NUMBER SIZE`, the size with an optional k or m suffix (`4 8k`).
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("{s:?} is not \"NUMBER SIZE\" (e.g. \"4 8k\")");
        let mut words = s.split_whitespace();
        let (Some(number), Some(size), None) = (words.next(), words.next(), words.next()) else {
            return Err(bad());
        };
        let number: usize = number.parse().map_err(|_| bad())?;
        let (digits, multiplier) = match size.as_bytes().last() {
            Some(b'k' | b'K') => (&size[..size.len() - 1], 1 << 10),
            Some(b'm' | b'M') => (&size[..size.len() - 1], 1 << 20),
            _ => (size, 1),
        };
        let size = digits
            .parse::<usize>()
            .ok()
            .and_then(|n| n.checked_mul(multiplier))
            .ok_or_else(bad)?;
        // hyper cannot read a head into less than 8 KiB of buffer, and a 16 MiB head is no head.
        if number == 0 || size < 1024 || number.saturating_mul(size) > 16 << 20 {
            return Err(format!(
                "{s:?}: each buffer must be at least 1k and all together at most 16m"
            ));
        }
        Ok(Self { number, size })
    }
}

impl std::fmt::Display for HeaderBuffers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.size.is_multiple_of(1024) {
            write!(f, "{} {}k", self.number, self.size / 1024)
        } else {
            write!(f, "{} {}", self.number, self.size)
        }
    }
}

/// How the body after an accepted head is delimited (RFC 9112 §6.3, as hyper decides it for requests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body: the next head follows at once.
    None,
    Length(u64),
    Chunked,
    /// hyper will refuse this head itself (and close the connection); stop screening.
    LeftToHyper,
}

/// A refused head: the status certgate answers and why (for the log).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    pub status: u16,
    pub reason: &'static str,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// More bytes are needed before the head can be judged.
    Partial,
    /// A complete head of `len` bytes, passed on. (A protocol switch is learnt from the response, 101, not
    /// from the request's `Upgrade` header: until then the connection stays HTTP.)
    Accept { len: usize, framing: Framing },
    /// Refused. `len` is the head's length when it was complete.
    Refuse(Refusal),
    /// Not an HTTP/1 head we can judge (the HTTP/2 preface, or bytes httparse refuses: hyper answers 400).
    /// Pass the connection through unscreened from here on.
    NotScreened,
}

const fn refuse(status: u16, reason: &'static str) -> Verdict {
    Verdict::Refuse(Refusal { status, reason })
}

/// Judge the head at the start of `buf`.
pub fn screen(buf: &[u8], limits: HeaderBuffers) -> Verdict {
    if buf.len() < H2_PREFACE.len() && H2_PREFACE.starts_with(buf) {
        return Verdict::Partial;
    }
    if buf.starts_with(H2_PREFACE) {
        return Verdict::NotScreened;
    }
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => {
            return match overlong_line(buf, limits.size) {
                Some(refusal) => Verdict::Refuse(refusal),
                None if buf.len() >= limits.total() => refuse(431, "request head too large"),
                None => Verdict::Partial,
            };
        }
        // Too many headers, a bad token, a bad version, obs-fold…: hyper refuses these the same way.
        Err(_) => return Verdict::NotScreened,
    };
    if len > limits.total() {
        return refuse(431, "request head too large");
    }
    if let Some(refusal) = overlong_line(&buf[..len], limits.size) {
        return Verdict::Refuse(refusal);
    }
    let http11 = req.version == Some(1);
    if req
        .path
        .is_some_and(|target| !target.starts_with('/') && authority_has_userinfo(target))
    {
        return refuse(400, "user information in the request target");
    }

    let (mut hosts, mut lengths, mut encodings) = (0, Vec::new(), Vec::new());
    for h in req.headers.iter() {
        if h.name.eq_ignore_ascii_case("host") {
            hosts += 1;
        } else if h.name.eq_ignore_ascii_case("content-length") {
            lengths.push(h.value);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            encodings.push(h.value);
        }
    }
    if hosts > 1 {
        return refuse(400, "duplicate Host header");
    }
    if lengths.len() > 1 {
        return refuse(400, "duplicate Content-Length header");
    }
    let framing = match (encodings.as_slice(), lengths.first()) {
        // hyper answers 400 for Transfer-Encoding on HTTP/1.0, as nginx does.
        ([_, ..], _) if !http11 => Framing::LeftToHyper,
        ([_, _, ..], _) => return refuse(400, "duplicate Transfer-Encoding header"),
        ([te], cl) => {
            // nginx accepts exactly "chunked" (any case), nothing around it.
            if !te.eq_ignore_ascii_case(b"chunked") {
                return refuse(501, "unsupported Transfer-Encoding");
            }
            if cl.is_some() {
                return refuse(400, "both Content-Length and Transfer-Encoding");
            }
            Framing::Chunked
        }
        ([], Some(cl)) => match digits(cl) {
            Some(0) => Framing::None,
            Some(n) => Framing::Length(n),
            None => Framing::LeftToHyper,
        },
        ([], None) => Framing::None,
    };
    Verdict::Accept { len, framing }
}

/// The first line of `head` longer than one buffer: the request line (414) or a header line (431).
fn overlong_line(head: &[u8], max: usize) -> Option<Refusal> {
    let mut lines = head.split(|&b| b == b'\n');
    let request_line = lines.next()?;
    // The last piece may be an incomplete line still arriving; it counts as soon as it is too long.
    if request_line.len() > max + 1 {
        return Some(Refusal {
            status: 414,
            reason: "request line too long",
        });
    }
    lines.any(|line| line.len() > max + 1).then_some(Refusal {
        status: 431,
        reason: "request header line too long",
    })
}

/// `http://user@host/…`: nginx refuses user information in an absolute-form target.
fn authority_has_userinfo(target: &str) -> bool {
    let Some((_, rest)) = target.split_once("://") else {
        return false;
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    authority.contains('@')
}

/// hyper's Content-Length syntax: ASCII digits only, no sign, no list, no overflow.
pub fn digits(value: &[u8]) -> Option<u64> {
    if value.is_empty() {
        return None;
    }
    value.iter().try_fold(0u64, |n, &b| {
        if !b.is_ascii_digit() {
            return None;
        }
        n.checked_mul(10)?.checked_add(u64::from(b - b'0'))
    })
}

/// Where a chunked body ends, byte by byte, accepting exactly what hyper's decoder accepts (CRLF line ends,
/// hex sizes, `;` extensions without a bare LF, optional trailers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ChunkedScan {
    state: ChunkState,
    /// The size being read, then the data bytes still to come.
    remaining: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum ChunkState {
    #[default]
    Start,
    Size,
    SizeLws,
    Extension,
    SizeLf,
    Data,
    DataCr,
    DataLf,
    Trailer,
    TrailerLf,
    EndCr,
    EndLf,
}

/// What [`ChunkedScan::feed`] found in a slice of bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkProgress {
    /// Every byte belongs to the body, which goes on.
    More,
    /// The body ends after this many bytes of the slice.
    End(usize),
    /// hyper refuses this body (and so closes the connection); stop screening.
    Invalid,
}

impl ChunkedScan {
    pub fn feed(&mut self, bytes: &[u8]) -> ChunkProgress {
        use ChunkState::*;
        let mut i = 0;
        while i < bytes.len() {
            if self.state == Data {
                let take = usize::try_from(self.remaining)
                    .unwrap_or(usize::MAX)
                    .min(bytes.len() - i);
                i += take;
                self.remaining -= take as u64;
                if self.remaining == 0 {
                    self.state = DataCr;
                }
                continue;
            }
            let b = bytes[i];
            i += 1;
            self.state = match (self.state, b) {
                (Start | Size, _) if b.is_ascii_hexdigit() => {
                    let digit = u64::from(char::from(b).to_digit(16).unwrap_or(0));
                    match self
                        .remaining
                        .checked_mul(16)
                        .and_then(|n| n.checked_add(digit))
                    {
                        Some(n) => self.remaining = n,
                        None => return ChunkProgress::Invalid,
                    }
                    Size
                }
                (Size | SizeLws, b'\t' | b' ') => SizeLws,
                (Size | SizeLws, b';') => Extension,
                (Size | SizeLws | Extension, b'\r') => SizeLf,
                (Extension, b'\n') => return ChunkProgress::Invalid,
                (Extension, _) => Extension,
                (SizeLf, b'\n') if self.remaining == 0 => EndCr,
                (SizeLf, b'\n') => Data,
                (DataCr, b'\r') => DataLf,
                (DataLf, b'\n') => Start,
                (EndCr, b'\r') => EndLf,
                (EndCr, _) | (Trailer, _) if b != b'\r' => Trailer,
                (Trailer, b'\r') => TrailerLf,
                (TrailerLf, b'\n') => EndCr,
                (EndLf, b'\n') => {
                    *self = Self::default();
                    return ChunkProgress::End(i);
                }
                _ => return ChunkProgress::Invalid,
            };
        }
        ChunkProgress::More
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verdict(head: &str) -> Verdict {
        screen(head.as_bytes(), HeaderBuffers::default())
    }

    fn refused(head: &str) -> u16 {
        match verdict(head) {
            Verdict::Refuse(r) => r.status,
            other => panic!("{head:?} was not refused: {other:?}"),
        }
    }

    #[test]
    fn plain_get_is_accepted_with_its_length() {
        let head = "GET / HTTP/1.1\r\nHost: a\r\n\r\n";
        assert_eq!(
            screen(
                format!("{head}GET /next").as_bytes(),
                HeaderBuffers::default()
            ),
            Verdict::Accept {
                len: head.len(),
                framing: Framing::None,
            }
        );
    }

    #[test]
    fn incomplete_head_waits_for_more() {
        assert_eq!(verdict("GET / HTTP/1.1\r\nHost: a\r\n"), Verdict::Partial);
        assert_eq!(verdict("PRI * HTTP/2"), Verdict::Partial);
    }

    #[test]
    fn http2_preface_is_not_screened() {
        assert_eq!(
            screen(H2_PREFACE, HeaderBuffers::default()),
            Verdict::NotScreened
        );
    }

    #[test]
    fn bare_lf_heads_are_accepted_as_nginx_accepts_them() {
        let head = "GET / HTTP/1.1\nHost: a\n\n";
        assert!(matches!(
            verdict(head),
            Verdict::Accept { len, .. } if len == head.len()
        ));
    }

    #[test]
    fn content_length_and_transfer_encoding_together_are_refused_in_either_order() {
        assert_eq!(
            refused(
                "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
            ),
            400
        );
        assert_eq!(
            refused(
                "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n"
            ),
            400
        );
    }

    #[test]
    fn repeated_content_length_is_refused_even_with_equal_values() {
        assert_eq!(
            refused("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n"),
            400
        );
    }

    #[test]
    fn only_plain_chunked_transfer_encoding_is_accepted() {
        for te in ["gzip, chunked", "chunked, identity", "gzip", "chunked;q=1"] {
            assert_eq!(
                refused(&format!(
                    "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: {te}\r\n\r\n"
                )),
                501,
                "{te}"
            );
        }
        assert_eq!(
            refused(
                "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n"
            ),
            400
        );
        assert!(matches!(
            verdict("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\n\r\n"),
            Verdict::Accept {
                framing: Framing::Chunked,
                ..
            }
        ));
    }

    #[test]
    fn transfer_encoding_on_http10_is_left_to_hyper() {
        assert!(matches!(
            verdict("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"),
            Verdict::Accept {
                framing: Framing::LeftToHyper,
                ..
            }
        ));
    }

    #[test]
    fn content_length_framing_follows_hyper() {
        let framing = |cl: &str| match verdict(&format!(
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: {cl}\r\n\r\n"
        )) {
            Verdict::Accept { framing, .. } => framing,
            other => panic!("{other:?}"),
        };
        assert_eq!(framing("12"), Framing::Length(12));
        assert_eq!(framing("0"), Framing::None);
        for bad in ["+1", "1,1", "0x10", "99999999999999999999"] {
            assert_eq!(framing(bad), Framing::LeftToHyper, "{bad}");
        }
    }

    #[test]
    fn duplicate_host_is_refused() {
        assert_eq!(refused("GET / HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n"), 400);
    }

    #[test]
    fn absolute_form_with_user_information_is_refused() {
        assert_eq!(
            refused("GET http://u@b.example/ HTTP/1.1\r\nHost: a\r\n\r\n"),
            400
        );
        assert!(matches!(
            verdict("GET http://b.example/x?a=u@v HTTP/1.1\r\nHost: a\r\n\r\n"),
            Verdict::Accept { .. }
        ));
    }

    #[test]
    fn malformed_heads_are_left_to_hyper() {
        for head in [
            "GET / HTTP/1.1\r\nHost: a\r\nX-A: a\r\n  folded\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\nX A: a\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\nX-A : a\r\n\r\n",
            "GET /a\0b HTTP/1.1\r\nHost: a\r\n\r\n",
        ] {
            assert_eq!(verdict(head), Verdict::NotScreened, "{head:?}");
        }
    }

    #[test]
    fn header_buffers_bound_each_line_and_the_whole_head() {
        let limits = HeaderBuffers {
            number: 4,
            size: 1024,
        };
        let long = "a".repeat(1100);
        let status = |head: String| match screen(head.as_bytes(), limits) {
            Verdict::Refuse(r) => r.status,
            other => panic!("{other:?}"),
        };
        assert_eq!(status(format!("GET /{long} HTTP/1.1\r\n")), 414);
        assert_eq!(status(format!("GET / HTTP/1.1\r\nX: {long}\r\n\r\n")), 431);
        // Still arriving, already too long.
        assert_eq!(status(format!("GET / HTTP/1.1\r\nX: {long}")), 431);
        let line = "a".repeat(1000);
        let many: String = (0..5).map(|i| format!("X{i}: {line}\r\n")).collect();
        assert_eq!(status(format!("GET / HTTP/1.1\r\n{many}\r\n")), 431);
        let few: String = (0..3).map(|i| format!("X{i}: {line}\r\n")).collect();
        assert!(matches!(
            screen(format!("GET / HTTP/1.1\r\n{few}\r\n").as_bytes(), limits),
            Verdict::Accept { .. }
        ));
    }

    #[test]
    fn header_buffers_parse_nginx_syntax() {
        assert_eq!(
            "4 8k".parse(),
            Ok(HeaderBuffers {
                number: 4,
                size: 8192
            })
        );
        assert_eq!(
            "2  1M".parse(),
            Ok(HeaderBuffers {
                number: 2,
                size: 1 << 20
            })
        );
        for bad in ["", "4", "8k", "0 8k", "4 512", "4 8k 1", "x 8k", "64 1m"] {
            assert!(bad.parse::<HeaderBuffers>().is_err(), "{bad:?}");
        }
        assert_eq!(HeaderBuffers::default().to_string(), "4 8k");
    }

    fn scan_all(body: &[u8]) -> ChunkProgress {
        ChunkedScan::default().feed(body)
    }

    #[test]
    fn chunked_body_end_is_found() {
        let body = b"5\r\nhello\r\nA;ext=1\r\n0123456789\r\n0\r\n\r\nGET /next";
        assert_eq!(scan_all(body), ChunkProgress::End(body.len() - 9));
        let with_trailers = b"1\r\na\r\n0\r\nX-T: 1\r\nX-U: 2\r\n\r\n";
        assert_eq!(
            scan_all(with_trailers),
            ChunkProgress::End(with_trailers.len())
        );
    }

    #[test]
    fn chunked_body_split_anywhere_ends_at_the_same_byte() {
        let body = b"5\r\nhello\r\n10 \r\n0123456789abcdef\r\n0\r\nX: y\r\n\r\nNEXT";
        for split in 0..body.len() {
            let mut scan = ChunkedScan::default();
            let end = match scan.feed(&body[..split]) {
                ChunkProgress::More => match scan.feed(&body[split..]) {
                    ChunkProgress::End(n) => split + n,
                    other => panic!("split {split}: {other:?}"),
                },
                ChunkProgress::End(n) => n,
                ChunkProgress::Invalid => panic!("split {split}: invalid"),
            };
            assert_eq!(end, body.len() - 4, "split at {split}");
        }
    }

    #[test]
    fn chunked_bodies_hyper_refuses_are_invalid() {
        for bad in [
            &b"zz\r\n"[..],
            b"5\nhello\n0\n\n",
            b"5\r\nhelloX\r\n",
            b"5;a\nb\r\n",
            b"5 5\r\n",
            b"ffffffffffffffffff\r\n",
        ] {
            assert_eq!(scan_all(bad), ChunkProgress::Invalid, "{bad:?}");
        }
    }

    mod properties {
        use super::super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
                let _ = screen(&bytes, HeaderBuffers::default());
                let _ = ChunkedScan::default().feed(&bytes);
            }

            #[test]
            fn a_chunked_body_ends_at_the_same_byte_however_it_is_split(
                chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 1..64), 0..8),
                split in any::<proptest::sample::Index>(),
            ) {
                let mut body = Vec::new();
                for chunk in &chunks {
                    body.extend_from_slice(format!("{:X}\r\n", chunk.len()).as_bytes());
                    body.extend_from_slice(chunk);
                    body.extend_from_slice(b"\r\n");
                }
                body.extend_from_slice(b"0\r\n\r\n");
                let end = body.len();
                body.extend_from_slice(b"GET / HTTP/1.1\r\n");
                let at = split.index(end);
                let mut scan = ChunkedScan::default();
                let found = match scan.feed(&body[..at]) {
                    ChunkProgress::More => match scan.feed(&body[at..]) {
                        ChunkProgress::End(n) => at + n,
                        other => panic!("{other:?}"),
                    },
                    other => panic!("ended early: {other:?}"),
                };
                prop_assert_eq!(found, end);
            }
        }
    }
}
