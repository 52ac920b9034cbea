//! A guest's stderr, kept bounded: the first and the last few KiB, with an elision marker between.
//! Both ends matter: componentize-py prints the Python traceback *above* the runtime's generic
//! panic lines, and a Rust panic prints its message last. Writes are never refused (a full buffer
//! must not turn logging into a trap); what falls in the middle is counted and dropped.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};

/// Bytes kept from the start of the guest's stderr.
pub const HEAD: usize = 6 * 1024;
/// Bytes kept from the end of the guest's stderr.
pub const TAIL: usize = 6 * 1024;
/// Cap on the root cause text of a trap.
pub const CAUSE_CAP: usize = 1024;
/// Cap on the error chain (with its wasm backtrace) of a trap.
pub const CHAIN_CAP: usize = 4 * 1024;

#[derive(Default)]
struct Kept {
    head: Vec<u8>,
    /// The last `TAIL` bytes after the head filled up (a sliding window).
    tail: std::collections::VecDeque<u8>,
    /// Bytes that fell out of the tail window.
    dropped: usize,
}

/// A guest stderr sink; clones share the buffer.
#[derive(Clone, Default)]
pub struct GuestOutput(Arc<Mutex<Kept>>);

impl GuestOutput {
    pub fn new() -> GuestOutput {
        GuestOutput::default()
    }

    fn push(&self, mut bytes: &[u8]) {
        let mut k = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let room = HEAD.saturating_sub(k.head.len());
        let n = room.min(bytes.len());
        k.head.extend_from_slice(&bytes[..n]);
        bytes = &bytes[n..];
        if bytes.len() > TAIL {
            k.dropped += k.tail.len() + bytes.len() - TAIL;
            k.tail.clear();
            bytes = &bytes[bytes.len() - TAIL..];
        }
        let overflow = (k.tail.len() + bytes.len()).saturating_sub(TAIL);
        k.tail.drain(..overflow);
        k.dropped += overflow;
        k.tail.extend(bytes);
    }

    /// What the guest wrote, trimmed, with `[… N bytes elided …]` where the middle was dropped.
    pub fn text(&self) -> String {
        let k = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = String::from_utf8_lossy(&k.head).into_owned();
        if k.dropped > 0 {
            out.push_str(&format!("\n[… {} bytes elided …]\n", k.dropped));
        }
        let tail: Vec<u8> = k.tail.iter().copied().collect();
        out.push_str(&String::from_utf8_lossy(&tail));
        out.trim().to_string()
    }
}

impl IsTerminal for GuestOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestOutput {
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl AsyncWrite for GuestOutput {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.push(buf);
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// `text` cut to about `cap` bytes: its first and last halves around an elision marker.
pub fn bounded(text: &str, cap: usize) -> String {
    if text.len() <= cap {
        return text.to_string();
    }
    let half = cap / 2;
    let mut start = half;
    while !text.is_char_boundary(start) {
        start -= 1;
    }
    let mut end = text.len() - half;
    while !text.is_char_boundary(end) {
        end += 1;
    }
    format!(
        "{}\n[… {} bytes elided …]\n{}",
        &text[..start],
        end - start,
        &text[end..]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_head_and_tail_of_long_output() {
        let out = GuestOutput::new();
        out.push(
            b"Traceback (most recent call last):\n  File \"app.py\"\nModuleNotFoundError: x\n",
        );
        for _ in 0..10_000 {
            out.push(b"noise noise noise\n");
        }
        out.push(b"thread panicked at the end\n");
        let text = out.text();
        assert!(text.starts_with("Traceback"), "{}", &text[..100]);
        assert!(text.contains("ModuleNotFoundError: x"));
        assert!(text.ends_with("thread panicked at the end"));
        assert!(text.contains("bytes elided"));
        assert!(text.len() < HEAD + TAIL + 100, "{}", text.len());
    }

    #[test]
    fn short_output_is_whole() {
        let out = GuestOutput::new();
        out.push(b"panicked at src/lib.rs:1:1:\nmisbehave: trap requested\n");
        assert_eq!(
            out.text(),
            "panicked at src/lib.rs:1:1:\nmisbehave: trap requested"
        );
        let big = "é".repeat(5000);
        let b = bounded(&big, 1000);
        assert!(b.len() < 1100 && b.contains("elided"));
        assert_eq!(bounded("short", 1000), "short");
    }
}
