//! Standard output that a closed pipe cannot crash: `gantry status | head`
//! must not panic (Rust's `println!` does on EPIPE). Once the reader is
//! gone, further output is dropped and the command goes on to its end
//! (an apply still finishes its hosts and releases their locks).

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

static GONE: AtomicBool = AtomicBool::new(false);

/// Write `s` to stdout, unless its reader has gone.
pub fn print(s: &str) {
    if GONE.load(Ordering::Relaxed) {
        return;
    }
    // Above the transfer bars, when they are drawn (`progress`).
    super::progress::above_bars(|| {
        let mut out = std::io::stdout().lock();
        if out
            .write_all(s.as_bytes())
            .and_then(|_| out.flush())
            .is_err()
        {
            GONE.store(true, Ordering::Relaxed);
        }
    });
}

/// `print!` to stdout through [`print`].
#[macro_export]
macro_rules! out {
    ($($t:tt)*) => { $crate::ui::out::print(&format!($($t)*)) };
}

/// `println!` to stdout through [`print`].
#[macro_export]
macro_rules! outln {
    () => { $crate::ui::out::print("\n") };
    ($($t:tt)*) => { $crate::ui::out::print(&(format!($($t)*) + "\n")) };
}

/// Text from a host (stderr, a file's content in a diff, a lock's owner
/// line, a journaled reason) made safe for a terminal: every control
/// character but newline and tab is shown as `\xNN` (`\u{NN}` above ASCII),
/// so no host can move the cursor, erase a plan's lines, retitle the window
/// or write the clipboard (OSC 52).
pub fn terminal_safe(s: &str) -> String {
    if !s.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
        return s.to_string();
    }
    s.chars()
        .map(|c| match c {
            '\n' | '\t' => c.to_string(),
            c if c.is_control() && (c as u32) < 0x80 => format!("\\x{:02x}", c as u32),
            c if c.is_control() => format!("\\u{{{:x}}}", c as u32),
            c => c.to_string(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    /// Review finding 18: an escape sequence from a host never reaches the
    /// terminal as one.
    #[test]
    fn host_text_cannot_drive_the_terminal() {
        let erase = "ok\x1b[1A\x1b[2Kgone\r\n\tnext\u{9b}31m\x07";
        assert_eq!(
            super::terminal_safe(erase),
            "ok\\x1b[1A\\x1b[2Kgone\\x0d\n\tnext\\u{9b}31m\\x07"
        );
        assert_eq!(super::terminal_safe("plain\ttext\n"), "plain\ttext\n");
    }
}
