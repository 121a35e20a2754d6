//! Read windows for the encoder, recycled.
//!
//! The encoder hands the network zero-copy slices of the buffer it read the
//! blob into, so a buffer is busy until the transport has sent and dropped
//! every slice of it. A fresh buffer per read costs zeroing it and faulting
//! its pages in, about as much CPU as the read itself; instead a buffer goes
//! back to a small free list when its last slice is dropped.

use std::sync::Mutex;

use bytes::Bytes;

/// The size of a pooled buffer.
pub(crate) const SIZE: usize = 1 << 20;

/// Free buffers kept for reuse (beyond that they are freed): enough for the
/// windows in flight on a few fast uploads.
const KEEP: usize = 48;

/// A free list of buffers.
pub(crate) struct Pool {
    free: Mutex<Vec<Vec<u8>>>,
}

/// The pool the encoder uses.
pub(crate) static POOL: Pool = Pool::new();

/// A buffer of [`SIZE`] bytes, of which the first `len` are the window.
struct Pooled {
    pool: &'static Pool,
    buf: Vec<u8>,
    len: usize,
}

impl AsRef<[u8]> for Pooled {
    fn as_ref(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        let buf = std::mem::take(&mut self.buf);
        if let Ok(mut free) = self.pool.free.lock()
            && free.len() < KEEP
        {
            free.push(buf);
        }
    }
}

impl Pool {
    pub(crate) const fn new() -> Self {
        Pool {
            free: Mutex::new(Vec::new()),
        }
    }

    /// Fills a window of `len` bytes with `fill` and returns it as
    /// [`Bytes`] whose slices keep the buffer busy. Windows over [`SIZE`]
    /// and small ones (the tail of a range) are plain allocations.
    pub(crate) fn read<E>(
        &'static self,
        len: usize,
        fill: impl FnOnce(&mut [u8]) -> Result<(), E>,
    ) -> Result<Bytes, E> {
        if !(SIZE / 16..=SIZE).contains(&len) {
            let mut buf = vec![0u8; len];
            fill(&mut buf)?;
            return Ok(Bytes::from(buf));
        }
        let buf = self
            .free
            .lock()
            .ok()
            .and_then(|mut free| free.pop())
            .unwrap_or_else(|| vec![0u8; SIZE]);
        let mut pooled = Pooled {
            pool: self,
            buf,
            len,
        };
        fill(&mut pooled.buf[..len])?;
        Ok(Bytes::from_owner(pooled))
    }

    #[cfg(test)]
    fn free_count(&self) -> usize {
        self.free.lock().map(|f| f.len()).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_come_back_when_the_last_slice_is_dropped() {
        static P: Pool = Pool::new();
        let a = P
            .read::<()>(SIZE, |b| {
                b.fill(7);
                Ok(())
            })
            .unwrap();
        let first = a.as_ptr();
        let slice = a.slice(10..20);
        drop(a);
        assert_eq!(P.free_count(), 0, "a slice still holds the buffer");
        assert_eq!(&slice[..], &[7u8; 10]);
        drop(slice);
        assert_eq!(P.free_count(), 1);
        let again = P.read::<()>(SIZE / 2, |_| Ok(())).unwrap();
        assert_eq!(again.as_ptr(), first, "the buffer is reused");
        assert_eq!(again.len(), SIZE / 2);
        assert_eq!(again[0], 7, "a reused buffer is not zeroed again");
    }

    #[test]
    fn the_free_list_is_bounded() {
        static P: Pool = Pool::new();
        let held: Vec<Bytes> = (0..KEEP + 5)
            .map(|_| P.read::<()>(SIZE, |_| Ok(())).unwrap())
            .collect();
        drop(held);
        assert_eq!(P.free_count(), KEEP);
    }

    #[test]
    fn a_failed_fill_returns_its_error_and_the_buffer() {
        static P: Pool = Pool::new();
        assert_eq!(P.read(SIZE, |_| Err("boom")).unwrap_err(), "boom");
        assert_eq!(P.free_count(), 1);
        assert_eq!(P.read(5, |_| Err("boom")).unwrap_err(), "boom");
    }

    #[test]
    fn odd_sizes_are_exact() {
        static P: Pool = Pool::new();
        for len in [1, SIZE / 16 - 1, SIZE / 16, SIZE - 1, SIZE, SIZE + 1] {
            let w = P
                .read::<()>(len, |b| {
                    b.fill(1);
                    Ok(())
                })
                .unwrap();
            assert_eq!(w.len(), len);
            assert!(w.iter().all(|&x| x == 1));
        }
    }
}
