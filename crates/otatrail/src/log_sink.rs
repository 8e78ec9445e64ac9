//! Where log lines go: stderr, written by a thread of its own a batch at a time.
//!
//! The server logs a line per request. Written by the runtime workers, one system call per
//! line, they cost about 7% of the throughput; handed one by one to a writer thread through a
//! channel (`tracing_appender::non_blocking`), every line could wake that thread: a futex call
//! and a thread switch for a log line. Here a line is appended to a shared buffer under a lock
//! and nobody is woken; the writer thread writes whatever has gathered every
//! [`FLUSH_EVERY`]. A buffer past [`MAX_BUFFERED`] is written by the thread that filled it
//! (logging then waits instead of growing the heap or dropping lines), and what is left is
//! written when the [`FlushGuard`] drops.

use std::io::{self, Write};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

/// How often the writer thread writes what has gathered.
pub const FLUSH_EVERY: Duration = Duration::from_millis(20);

/// Bytes buffered past which the thread logging writes the buffer itself.
pub const MAX_BUFFERED: usize = 1 << 20;

struct Shared {
    lines: Mutex<Vec<u8>>,
    /// Held while a batch is taken and written, so batches reach the output in the order they
    /// were taken (each thread's lines stay in order).
    output: Mutex<Box<dyn Write + Send>>,
    stop: Mutex<bool>,
    stopping: Condvar,
}

fn lock<T: ?Sized>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding a log lock leaves nothing half-done that matters.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Shared {
    /// Writes what has gathered. Output errors are dropped: there is nowhere to report them.
    fn flush(&self) {
        let mut out = lock(&self.output);
        let batch = std::mem::take(&mut *lock(&self.lines));
        if !batch.is_empty() {
            let _ = out.write_all(&batch);
            let _ = out.flush();
        }
    }
}

/// The `MakeWriter` to give `tracing_subscriber`: each line it formats is one `write` here.
#[derive(Clone)]
pub struct BatchedWriter(Arc<Shared>);

impl Write for BatchedWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let full = {
            let mut lines = lock(&self.0.lines);
            lines.extend_from_slice(buf);
            lines.len() >= MAX_BUFFERED
        };
        if full {
            self.0.flush();
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for BatchedWriter {
    type Writer = BatchedWriter;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// Stops the writer thread and writes what is left when dropped.
#[must_use = "log lines still buffered are lost when the guard is dropped early"]
pub struct FlushGuard {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for FlushGuard {
    fn drop(&mut self) {
        *lock(&self.shared.stop) = true;
        self.shared.stopping.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.shared.flush();
    }
}

/// A writer batching lines to `output`, and the guard that ends it. `output` is written only
/// by the thread `thread_name`, or by a thread whose line filled the buffer.
pub fn batched(output: Box<dyn Write + Send>, thread_name: &str) -> io::Result<(BatchedWriter, FlushGuard)> {
    let shared = Arc::new(Shared {
        lines: Mutex::new(Vec::new()),
        output: Mutex::new(output),
        stop: Mutex::new(false),
        stopping: Condvar::new(),
    });
    let s = shared.clone();
    let thread = std::thread::Builder::new().name(thread_name.into()).spawn(move || {
        let mut stop = lock(&s.stop);
        while !*stop {
            stop = s.stopping.wait_timeout(stop, FLUSH_EVERY).unwrap_or_else(|p| p.into_inner()).0;
            drop(stop);
            s.flush();
            stop = lock(&s.stop);
        }
    })?;
    Ok((BatchedWriter(shared.clone()), FlushGuard { shared, thread: Some(thread) }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An output the test can read back.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            lock(&self.0).extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Captured {
        fn text(&self) -> String {
            String::from_utf8(lock(&self.0).clone()).unwrap()
        }
    }

    #[test]
    fn lines_are_written_within_the_interval_and_the_rest_when_the_guard_drops() {
        let out = Captured::default();
        let (mut w, guard) = batched(Box::new(out.clone()), "test-log").unwrap();
        w.write_all(b"one\n").unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while out.text().is_empty() {
            assert!(std::time::Instant::now() < deadline, "not written by the writer thread");
            std::thread::sleep(Duration::from_millis(2));
        }
        assert_eq!(out.text(), "one\n");
        w.write_all(b"two\n").unwrap();
        drop(guard);
        assert_eq!(out.text(), "one\ntwo\n", "the guard writes what is left");
    }

    #[test]
    fn each_threads_lines_stay_whole_and_in_order_when_the_buffer_fills() {
        let out = Captured::default();
        let (w, guard) = batched(Box::new(out.clone()), "test-log").unwrap();
        let line_len = 1000;
        let per_thread = 3 * MAX_BUFFERED / line_len;
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let mut w = w.clone();
                std::thread::spawn(move || {
                    for i in 0..per_thread {
                        let mut line = format!("{t} {i:08} ");
                        line.push_str(&"x".repeat(line_len - line.len() - 1));
                        line.push('\n');
                        w.write_all(line.as_bytes()).unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        drop(guard);
        let text = out.text();
        let mut next = [0usize; 4];
        for line in text.lines() {
            assert_eq!(line.len(), line_len - 1, "a line was cut or merged");
            let mut parts = line.split(' ');
            let t: usize = parts.next().unwrap().parse().unwrap();
            let i: usize = parts.next().unwrap().parse().unwrap();
            assert_eq!(i, next[t], "thread {t}'s lines out of order");
            next[t] += 1;
        }
        assert_eq!(next, [per_thread; 4], "every line written once");
    }
}
