//! Progress of a run's file transfers (`upload`): a bar per transfer in
//! flight and one for the run's total, drawn on stderr only when it is a
//! terminal, so logs and pipes get the plain report and nothing else.
//! While bars are drawn, the report's lines are printed above them
//! (`out::print` suspends the bars around each write).
//!
//! A transfer from the controller counts its bytes as they leave. One
//! relayed between hosts shows where it comes from and how long it has
//! run: its bytes never pass through the controller.

use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::io::{AsyncRead, ReadBuf};

/// The one set of bars a run draws (the report's task bar and the
/// transfers'), on stderr, hidden when it is not a terminal.
pub fn bars() -> &'static MultiProgress {
    static BARS: std::sync::OnceLock<MultiProgress> = std::sync::OnceLock::new();
    BARS.get_or_init(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()))
}

/// Run `write` with the bars lifted off the terminal, so that a line
/// printed to stdout lands above them, not through them.
pub(crate) fn above_bars(write: impl FnOnce()) {
    bars().suspend(write)
}

/// The run's transfers. Nothing is drawn until the first one begins.
pub struct Transfers {
    bars: MultiProgress,
    total: Mutex<Option<ProgressBar>>,
    copies: std::sync::atomic::AtomicU64,
    done: std::sync::atomic::AtomicU64,
}

impl Default for Transfers {
    fn default() -> Self {
        Self::new(bars().clone())
    }
}

impl Transfers {
    /// Transfers drawn among `bars` (the run's, or hidden ones in tests).
    pub fn new(bars: MultiProgress) -> Transfers {
        Transfers {
            bars,
            total: Mutex::new(None),
            copies: 0.into(),
            done: 0.into(),
        }
    }

    fn total(&self) -> ProgressBar {
        let mut t = self.total.lock().expect("not poisoned");
        t.get_or_insert_with(|| {
            let bar = self.bars.add(ProgressBar::new(0));
            bar.set_style(
                ProgressStyle::with_template(
                    "{prefix:>24} {wide_bar} {bytes}/{total_bytes} from the controller, {bytes_per_sec} {msg}",
                )
                .expect("a valid template"),
            );
            bar.set_prefix("all hosts");
            bar
        })
        .clone()
    }

    fn counted(&self) {
        use std::sync::atomic::Ordering::SeqCst;
        let (done, copies) = (self.done.load(SeqCst), self.copies.load(SeqCst));
        self.total()
            .set_message(format!("({done} of {copies} copies)"));
    }

    /// A transfer from the controller of `bytes` (what is left of the
    /// file) to `host`.
    pub fn direct(&self, host: &str, file: &str, bytes: u64) -> Transfer<'_> {
        let total = self.total();
        total.inc_length(bytes);
        let bar = self.bars.insert_before(&total, ProgressBar::new(bytes));
        bar.set_style(
            ProgressStyle::with_template("{prefix:>24} {wide_bar} {bytes}/{total_bytes} {msg}")
                .expect("a valid template"),
        );
        self.begun(bar, host, file)
    }

    /// A transfer relayed to `host` from `peer`.
    pub fn relayed(&self, host: &str, peer: &str, file: &str) -> Transfer<'_> {
        let total = self.total();
        let bar = self.bars.insert_before(&total, ProgressBar::new_spinner());
        bar.set_style(
            ProgressStyle::with_template("{prefix:>24} {spinner} {msg} {elapsed}")
                .expect("a valid template"),
        );
        bar.enable_steady_tick(std::time::Duration::from_millis(250));
        let t = self.begun(bar, host, file);
        t.bar.set_message(format!("{file} from {peer}"));
        t
    }

    /// A copy landed on its host.
    pub fn landed(&self) {
        self.done.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.counted();
    }

    fn begun(&self, bar: ProgressBar, host: &str, file: &str) -> Transfer<'_> {
        bar.set_prefix(host.to_string());
        bar.set_message(file.to_string());
        self.copies
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.counted();
        Transfer {
            bar,
            total: self.total(),
            parent: self,
        }
    }
}

impl Drop for Transfers {
    fn drop(&mut self) {
        if let Some(t) = self.total.lock().expect("not poisoned").take() {
            t.finish_and_clear();
            self.bars.remove(&t);
        }
    }
}

/// One transfer in flight; its bar goes when it is dropped.
pub struct Transfer<'a> {
    bar: ProgressBar,
    total: ProgressBar,
    parent: &'a Transfers,
}

impl Transfer<'_> {
    /// `n` more bytes sent from the controller.
    pub fn sent(&self, n: u64) {
        self.bar.inc(n);
        self.total.inc(n);
    }

    /// What has been counted: this transfer's bytes, the run's bytes.
    pub fn position(&self) -> (u64, u64) {
        (self.bar.position(), self.total.position())
    }
}

impl Drop for Transfer<'_> {
    fn drop(&mut self) {
        self.bar.finish_and_clear();
        self.parent.bars.remove(&self.bar);
    }
}

/// A reader that counts what is read from it into a transfer's bars.
pub struct Counted<'a, R> {
    pub inner: R,
    pub transfer: &'a Transfer<'a>,
}

impl<R: AsyncRead + Unpin> AsyncRead for Counted<'_, R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = &r {
            self.transfer.sent((buf.filled().len() - before) as u64);
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn bytes_read_are_counted_per_transfer_and_in_total() {
        let t = Transfers::new(MultiProgress::with_draw_target(ProgressDrawTarget::hidden()));
        let a = t.direct("master1", "bin/runc", 10);
        let b = t.direct("worker1", "bin/runc", 6);
        let mut sink = Vec::new();
        Counted {
            inner: &b"0123456789"[..],
            transfer: &a,
        }
        .read_to_end(&mut sink)
        .await
        .unwrap();
        let mut r = Counted {
            inner: &b"abcdef"[..],
            transfer: &b,
        };
        let mut three = [0u8; 3];
        r.read_exact(&mut three).await.unwrap();
        assert_eq!(a.position(), (10, 13));
        assert_eq!(b.position(), (3, 13));
        t.landed();
        assert_eq!(
            t.total().message(),
            "(1 of 2 copies)",
            "copies landed of copies begun"
        );
    }
}
