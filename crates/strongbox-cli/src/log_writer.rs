//! Where log lines go: stderr, through a writer that never fails. tracing-subscriber reports a
//! failed write with `eprintln!`, which panics when stderr itself cannot be written (a log file
//! on a full disk), and that panic took down the request or the audit writer that logged. Here
//! a line that cannot be written is dropped and counted, and the count is written once the log
//! can be written again.

use std::io::{self, Write};
use std::sync::atomic::{AtomicU64, Ordering};

static DROPPED: AtomicU64 = AtomicU64::new(0);

#[derive(Clone, Copy, Default)]
pub struct LogWriter;

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut err = io::stderr().lock();
        if err.write_all(buf).is_err() {
            DROPPED.fetch_add(1, Ordering::Relaxed);
            return Ok(buf.len());
        }
        let dropped = DROPPED.swap(0, Ordering::Relaxed);
        if dropped > 0 {
            let note = format!(
                "(strongbox: {dropped} log lines were dropped: the log could not be written)\n"
            );
            if err.write_all(note.as_bytes()).is_err() {
                DROPPED.fetch_add(dropped, Ordering::Relaxed);
            }
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        let _ = io::stderr().flush();
        Ok(())
    }
}
