//! The one framing of the parts of a request's output: each part (a probe, a
//! command among writes) is followed by `\nMARKER INDEX RC\n`, where MARKER
//! is random per request, so no content can be taken for a frame. `end`
//! writes the shell text that prints one; `parse` is the one reader.

/// The shell text that ends part `index`, printing its status `rc` (shell
/// text, such as `$?` or `$c`).
pub fn end(marker: &str, index: usize, rc: &str) -> String {
    format!("printf '\\n%s %d %d\\n' {marker} {index} {rc}")
}

/// One part's output and status.
#[derive(Debug, Clone, PartialEq)]
pub struct Frame {
    pub index: usize,
    pub rc: i32,
    pub out: String,
}

/// The frames in `stdout`, in the order they came, and the text after the
/// last one. None when a frame line is malformed.
pub fn parse<'a>(stdout: &'a str, marker: &str) -> Option<(Vec<Frame>, &'a str)> {
    let sep = format!("\n{marker} ");
    let mut frames = Vec::new();
    let mut rest = stdout;
    while let Some(at) = rest.find(&sep) {
        let (frame, after) = cut(rest, at, sep.len())?;
        frames.push(frame);
        rest = after;
    }
    Some((frames, rest))
}

/// Exactly `count` parts, numbered 0.. in order, and nothing after them.
/// Each part ends only where its own number follows the marker, so even
/// content that held the marker could not end another part early.
pub fn parts(stdout: &str, marker: &str, count: usize) -> Option<Vec<Frame>> {
    let mut frames = Vec::with_capacity(count);
    let mut rest = stdout;
    for i in 0..count {
        let sep = format!("\n{marker} {i} ");
        let at = rest.find(&sep)?;
        let (frame, after) = cut(rest, at, sep.len() - format!("{i} ").len())?;
        frames.push(frame);
        rest = after;
    }
    rest.is_empty().then_some(frames)
}

/// The frame whose line starts at `at + skip` in `rest` (after the marker),
/// and what follows it.
fn cut(rest: &str, at: usize, skip: usize) -> Option<(Frame, &str)> {
    let (line, after) = rest[at + skip..].split_once('\n')?;
    let (index, rc) = line.split_once(' ')?;
    Some((
        Frame {
            index: index.parse().ok()?,
            rc: rc.parse().ok()?,
            out: rest[..at].to_string(),
        },
        after,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_cut_at_their_marker_only() {
        let m = "gantry-probe-00";
        // A part whose content looks like another marker, one without a
        // final newline, and an empty answer with its own exit code.
        let out = format!(
            "644 root root regular file\nx\n{m} 9 0\n\n{m} 0 0\nno newline\n{m} 1 0\n\n{m} 2 1\n"
        );
        let a = parts(&out, m, 3).unwrap();
        assert_eq!(
            a[0].out,
            format!("644 root root regular file\nx\n{m} 9 0\n")
        );
        assert_eq!((a[1].rc, a[1].out.as_str()), (0, "no newline"));
        assert_eq!((a[2].rc, a[2].out.as_str()), (1, ""));
        // Missing or trailing parts are malformed, not guessed at.
        assert!(parts(&out, m, 4).is_none());
        assert!(parts(&format!("{out}junk"), m, 3).is_none());
        // The text after the last frame is the caller's.
        let text = format!("out\n{m} 3 7\nwritten 4\n");
        let (frames, rest) = parse(&text, m).unwrap();
        assert_eq!(
            frames,
            [Frame {
                index: 3,
                rc: 7,
                out: "out".into()
            }]
        );
        assert_eq!(rest, "written 4\n");
        assert!(parse(&format!("\n{m} x 0\n"), m).is_none());
    }
}
