//! The queue of encoded bytes waiting to be written, shaped for one vectored write.

use std::collections::VecDeque;
use std::io::IoSlice;

use bytes::{Buf, Bytes, BytesMut};

/// Encoded frames waiting for the transport.
///
/// Small frames are appended to one growing buffer (`tail`), so the replies produced by one
/// read go out with one write. Large unmasked payloads are queued as shared [`Bytes`] without
/// a copy. Once everything is written the buffers are released: an idle connection holds none.
#[derive(Debug, Default)]
pub(crate) struct Outbound {
    chunks: VecDeque<Bytes>,
    tail: BytesMut,
    len: usize,
}

impl Outbound {
    /// Bytes waiting.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The buffer to append small writes to; call [`Outbound::commit`] with the bytes added.
    pub(crate) fn tail(&mut self) -> &mut BytesMut {
        &mut self.tail
    }

    /// Accounts for `n` bytes appended through [`Outbound::tail`].
    pub(crate) fn commit(&mut self, n: usize) {
        self.len += n;
    }

    /// Queues shared bytes after everything queued so far, without copying them.
    pub(crate) fn push_shared(&mut self, bytes: Bytes) {
        if bytes.is_empty() {
            return;
        }
        if !self.tail.is_empty() {
            let head = self.tail.split().freeze();
            self.chunks.push_back(head);
        }
        self.len += bytes.len();
        self.chunks.push_back(bytes);
    }

    /// Fills `dst` with the waiting bytes in order; returns how many slices were filled.
    pub(crate) fn io_slices<'a>(&'a self, dst: &mut [IoSlice<'a>]) -> usize {
        let mut n = 0;
        let tail = (!self.tail.is_empty()).then_some(&self.tail[..]);
        for chunk in self.chunks.iter().map(|c| &c[..]).chain(tail) {
            if n == dst.len() {
                break;
            }
            dst[n] = IoSlice::new(chunk);
            n += 1;
        }
        n
    }

    /// The first waiting chunk, for transports without vectored writes.
    pub(crate) fn first_chunk(&self) -> &[u8] {
        match self.chunks.front() {
            Some(c) => c,
            None => &self.tail,
        }
    }

    /// Drops `n` bytes that were written.
    pub(crate) fn advance(&mut self, mut n: usize) {
        assert!(n <= self.len, "advanced past the queued bytes");
        self.len -= n;
        while n > 0 {
            match self.chunks.front_mut() {
                Some(front) if front.len() <= n => {
                    n -= front.len();
                    self.chunks.pop_front();
                }
                Some(front) => {
                    front.advance(n);
                    n = 0;
                }
                None => {
                    self.tail.advance(n);
                    n = 0;
                }
            }
        }
        if self.len == 0 {
            // Release the allocation: an idle connection holds no write buffer.
            self.tail = BytesMut::new();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gather(o: &Outbound) -> Vec<u8> {
        let mut slices = [IoSlice::new(&[]); 16];
        let n = o.io_slices(&mut slices);
        slices[..n].iter().flat_map(|s| s.iter().copied()).collect()
    }

    #[test]
    fn keeps_order_across_small_and_shared_writes() {
        let mut o = Outbound::default();
        o.tail().extend_from_slice(b"ab");
        o.commit(2);
        o.push_shared(Bytes::from_static(b"cdef"));
        o.tail().extend_from_slice(b"g");
        o.commit(1);
        assert_eq!(gather(&o), b"abcdefg");
        assert_eq!(o.len(), 7);
        o.advance(3);
        assert_eq!(gather(&o), b"defg");
        assert_eq!(o.first_chunk(), b"def");
        o.advance(4);
        assert!(o.is_empty());
        assert_eq!(o.tail.capacity(), 0);
    }
}
