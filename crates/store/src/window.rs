//! Pooled windows of a blob's bytes, recycled.
//!
//! The encoder reads the blob into a window and hands the network zero-copy
//! slices of it; the decoder verifies groups into a window and hands it to
//! the store's write and to a reader following the download (see
//! `follow`). So a buffer is busy until every slice of it is dropped. A
//! fresh buffer per window costs zeroing it and faulting its pages in,
//! about as much CPU as filling it; instead a buffer goes back to a small
//! free list when its last slice is dropped. Buffers start at an aligned
//! address, so a window can be written to disk directly (`O_DIRECT`).

use std::sync::Mutex;

use bytes::Bytes;

use crate::direct;

/// The size of a pooled buffer.
pub(crate) const SIZE: usize = 1 << 20;

/// Free buffers kept for reuse (beyond that they are freed): enough for the
/// windows in flight on a few fast transfers.
const KEEP: usize = 48;

/// A free list of buffers.
pub(crate) struct Pool {
    free: Mutex<Vec<Vec<u8>>>,
}

/// The pool the encoder and decoder use.
pub(crate) static POOL: Pool = Pool::new();

/// A buffer holding [`SIZE`] bytes from the aligned offset `base`, of which
/// the first `len` are the window.
struct Pooled {
    pool: &'static Pool,
    buf: Vec<u8>,
    base: usize,
    len: usize,
}

impl AsRef<[u8]> for Pooled {
    fn as_ref(&self) -> &[u8] {
        &self.buf[self.base..self.base + self.len]
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

/// A pooled buffer being filled: [`SIZE`] writable bytes at an aligned
/// address, frozen into [`Bytes`] once filled.
pub(crate) struct WindowMut(Pooled);

impl WindowMut {
    /// The whole buffer.
    pub(crate) fn as_mut(&mut self) -> &mut [u8] {
        let Pooled { buf, base, .. } = &mut self.0;
        &mut buf[*base..*base + SIZE]
    }

    /// The first `len` bytes as a window (at most [`SIZE`]).
    pub(crate) fn freeze(mut self, len: usize) -> Bytes {
        self.0.len = len.min(SIZE);
        Bytes::from_owner(self.0)
    }
}

impl Pool {
    pub(crate) const fn new() -> Self {
        Pool {
            free: Mutex::new(Vec::new()),
        }
    }

    /// A buffer from the free list, or a new one.
    pub(crate) fn take(&'static self) -> WindowMut {
        let mut buf = self
            .free
            .lock()
            .ok()
            .and_then(|mut free| free.pop())
            // Zeroed lazily by the kernel, page by page as it is filled.
            .unwrap_or_else(|| vec![0u8; SIZE + direct::ALIGN]);
        let base = direct::aligned(&mut buf, SIZE);
        WindowMut(Pooled {
            pool: self,
            buf,
            base,
            len: 0,
        })
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
        let mut w = self.take();
        fill(&mut w.as_mut()[..len])?;
        Ok(w.freeze(len))
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
    fn windows_start_at_aligned_addresses() {
        static P: Pool = Pool::new();
        for _ in 0..3 {
            let mut w = P.take();
            assert_eq!(w.as_mut().len(), SIZE);
            assert!((w.as_mut().as_ptr() as usize).is_multiple_of(direct::ALIGN));
            let b = w.freeze(SIZE / 2);
            assert_eq!(b.len(), SIZE / 2);
            assert!((b.as_ptr() as usize).is_multiple_of(direct::ALIGN));
        }
        assert_eq!(P.free_count(), 1, "one buffer served every window");
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
