//! A line diff (longest common subsequence) of two workflow definitions, for
//! `fuse workflows diff` and the dashboard.

/// The lines of `a` and `b` tagged `' '` (in both), `'-'` (only in `a`) or
/// `'+'` (only in `b`), in order. The common start and end are trimmed
/// before the quadratic part; a middle too large for it is shown as all
/// removed then all added.
pub fn lines(a: &str, b: &str) -> Vec<(char, String)> {
    let a: Vec<&str> = a.lines().collect();
    let b: Vec<&str> = b.lines().collect();
    let start = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
    let end = a[start..]
        .iter()
        .rev()
        .zip(b[start..].iter().rev())
        .take_while(|(x, y)| x == y)
        .count();
    let (mid_a, mid_b) = (&a[start..a.len() - end], &b[start..b.len() - end]);
    let mut out: Vec<(char, String)> = a[..start].iter().map(|l| (' ', l.to_string())).collect();
    const MAX_CELLS: usize = 4_000_000;
    if mid_a.len().saturating_mul(mid_b.len()) > MAX_CELLS {
        out.extend(mid_a.iter().map(|l| ('-', l.to_string())));
        out.extend(mid_b.iter().map(|l| ('+', l.to_string())));
    } else {
        // lcs[i][j]: the longest common subsequence of mid_a[i..] and mid_b[j..].
        let (n, m) = (mid_a.len(), mid_b.len());
        let mut lcs = vec![0u32; (n + 1) * (m + 1)];
        for i in (0..n).rev() {
            for j in (0..m).rev() {
                lcs[i * (m + 1) + j] = if mid_a[i] == mid_b[j] {
                    lcs[(i + 1) * (m + 1) + j + 1] + 1
                } else {
                    lcs[(i + 1) * (m + 1) + j].max(lcs[i * (m + 1) + j + 1])
                };
            }
        }
        let (mut i, mut j) = (0, 0);
        while i < n || j < m {
            if i < n && j < m && mid_a[i] == mid_b[j] {
                out.push((' ', mid_a[i].to_string()));
                i += 1;
                j += 1;
            } else if i < n && (j == m || lcs[(i + 1) * (m + 1) + j] >= lcs[i * (m + 1) + j + 1]) {
                out.push(('-', mid_a[i].to_string()));
                i += 1;
            } else {
                out.push(('+', mid_b[j].to_string()));
                j += 1;
            }
        }
    }
    out.extend(a[a.len() - end..].iter().map(|l| (' ', l.to_string())));
    out
}

/// The changed lines of a diff with `context` unchanged lines around each;
/// `None` stands for unchanged lines left out before the next shown one.
pub fn folded(lines: &[(char, String)], context: usize) -> Vec<Option<&(char, String)>> {
    let near = |i: usize| {
        lines[i.saturating_sub(context)..(i + context + 1).min(lines.len())]
            .iter()
            .any(|(tag, _)| *tag != ' ')
    };
    let mut out = Vec::new();
    let mut gap = false;
    for (i, line) in lines.iter().enumerate() {
        if near(i) {
            if gap {
                out.push(None);
            }
            gap = false;
            out.push(Some(line));
        } else {
            gap = true;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn changed_lines_only() {
        let d = super::lines("a\nb\nc\nd", "a\nx\nc\nd\ne");
        let changed: Vec<String> = d
            .iter()
            .filter(|(t, _)| *t != ' ')
            .map(|(t, l)| format!("{t}{l}"))
            .collect();
        assert_eq!(changed, ["-b", "+x", "+e"]);
        assert!(super::lines("same", "same").iter().all(|(t, _)| *t == ' '));
    }
}
