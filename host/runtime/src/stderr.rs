//! A plugin's stderr, kept as its last bytes.
//!
//! A panic message is the last thing a plugin writes, so after a flood it is the
//! tail that matters: [`TailPipe`] keeps the last `capacity` bytes written and
//! counts the bytes it let go. Writes never fail and never wait, so a flood costs
//! the guest nothing but the copy.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

/// How much a guest may write in one `write` (the permit of `check-write`).
/// Bounds what `write-zeroes` makes the host allocate; larger writes are split
/// by the guest.
const WRITE_PERMIT: usize = 64 << 10;

/// An output stream keeping the last `capacity` bytes written to it. Clones
/// share the same bytes.
#[derive(Clone, Debug)]
pub(crate) struct TailPipe {
    inner: Arc<Mutex<Tail>>,
}

#[derive(Debug)]
struct Tail {
    bytes: VecDeque<u8>,
    capacity: usize,
    /// Bytes written and no longer kept.
    dropped: u64,
}

impl TailPipe {
    pub fn new(capacity: usize) -> TailPipe {
        TailPipe {
            inner: Arc::new(Mutex::new(Tail {
                bytes: VecDeque::with_capacity(capacity.min(WRITE_PERMIT)),
                capacity,
                dropped: 0,
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Tail> {
        // The bytes are plain data: a panic elsewhere leaves them usable.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn push(&self, data: &[u8]) {
        let mut tail = self.lock();
        let capacity = tail.capacity;
        if data.len() >= capacity {
            let gone = tail.bytes.len() + (data.len() - capacity);
            tail.dropped += gone as u64;
            tail.bytes.clear();
            tail.bytes.extend(&data[data.len() - capacity..]);
            return;
        }
        let over = (tail.bytes.len() + data.len()).saturating_sub(capacity);
        if over > 0 {
            tail.bytes.drain(..over);
            tail.dropped += over as u64;
        }
        tail.bytes.extend(data);
    }

    /// The bytes dropped so far and the bytes kept.
    pub fn contents(&self) -> (u64, Vec<u8>) {
        let tail = self.lock();
        (tail.dropped, tail.bytes.iter().copied().collect())
    }

    /// At most the last `max` bytes kept, trimmed, as text, preceded by
    /// `[... N bytes dropped]` when anything written is not shown.
    pub fn tail_text(&self, max: usize) -> String {
        let (dropped, bytes) = self.contents();
        let end = bytes.trim_ascii_end().len();
        let mut start = end.saturating_sub(max);
        // Start on a character: skip the continuation bytes of one cut in half.
        for _ in 0..3 {
            if start < end && bytes[start] & 0xC0 == 0x80 {
                start += 1;
            }
        }
        let omitted = dropped + start as u64;
        let text = String::from_utf8_lossy(bytes[start..end].trim_ascii_start());
        match (omitted, text.is_empty()) {
            (0, _) => text.into_owned(),
            (_, true) => format!("[... {omitted} bytes dropped]"),
            (_, false) => format!("[... {omitted} bytes dropped] {text}"),
        }
    }
}

#[wasmtime_wasi::async_trait]
impl OutputStream for TailPipe {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.push(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(WRITE_PERMIT)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for TailPipe {
    async fn ready(&mut self) {}
}

impl AsyncWrite for TailPipe {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.push(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl IsTerminal for TailPipe {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for TailPipe {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_keeps_the_last_bytes_and_counts_the_rest() {
        let pipe = TailPipe::new(16);
        let mut stream = pipe.p2_stream();
        for _ in 0..1000 {
            assert!(stream.check_write().unwrap() > 0);
            stream.write(Bytes::from_static(b"eeeeeeeeee")).unwrap();
        }
        stream
            .write(Bytes::from_static(b"panicked here\n"))
            .unwrap();
        stream.flush().unwrap();

        let (dropped, kept) = pipe.contents();
        assert_eq!(kept, b"eepanicked here\n");
        assert_eq!(dropped, 10_000 + 14 - 16);
        assert_eq!(
            pipe.tail_text(100),
            "[... 9998 bytes dropped] eepanicked here"
        );
        assert_eq!(pipe.tail_text(7), "[... 10006 bytes dropped] ed here");
    }

    #[test]
    fn a_write_larger_than_the_capacity_keeps_its_end() {
        let pipe = TailPipe::new(4);
        pipe.push(b"ab");
        pipe.push(b"0123456789");
        assert_eq!(pipe.contents(), (8, b"6789".to_vec()));
        let empty = TailPipe::new(0);
        empty.push(b"abc");
        assert_eq!(empty.contents(), (3, Vec::new()));
        assert_eq!(empty.tail_text(10), "[... 3 bytes dropped]");
    }

    #[test]
    fn nothing_dropped_shows_the_text_alone_and_cuts_on_a_character() {
        let pipe = TailPipe::new(1024);
        assert_eq!(pipe.tail_text(100), "");
        pipe.push("  héllo wörld \n".as_bytes());
        assert_eq!(pipe.tail_text(100), "héllo wörld");
        // 4 bytes from the end fall inside `ö`: the cut moves to the next character.
        assert_eq!(pipe.tail_text(4), "[... 12 bytes dropped] rld");
        assert_eq!(pipe.tail_text(5), "[... 10 bytes dropped] örld");
    }
}
