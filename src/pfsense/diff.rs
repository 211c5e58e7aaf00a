//! A line diff (longest common subsequence) of two texts in unified style,
//! for `wgctl import pfsense --dry-run`. The files are a few hundred lines,
//! so the quadratic table is fine; past [`MAX_CELLS`] the whole old text is
//! shown removed and the new one added.

/// Largest LCS table built (old lines x new lines).
const MAX_CELLS: usize = 4_000_000;

/// Lines of context around each change.
const CONTEXT: usize = 3;

/// `--- old_name` / `+++ new_name` and the hunks turning `old` into `new`;
/// empty when they are equal.
pub fn unified(old: &str, new: &str, old_name: &str, new_name: &str) -> String {
    if old == new {
        return String::new();
    }
    let a: Vec<&str> = old.lines().collect();
    let b: Vec<&str> = new.lines().collect();
    let ops = edit_script(&a, &b);
    let mut out = format!("--- {old_name}\n+++ {new_name}\n");
    // Group the script into hunks with CONTEXT lines around changes.
    let changed: Vec<usize> = ops
        .iter()
        .enumerate()
        .filter(|(_, o)| !matches!(o, Op::Same(..)))
        .map(|(i, _)| i)
        .collect();
    let mut i = 0;
    while i < changed.len() {
        let start = changed[i].saturating_sub(CONTEXT);
        let mut end = changed[i] + CONTEXT + 1;
        let mut j = i + 1;
        while j < changed.len() && changed[j] <= end + CONTEXT {
            end = changed[j] + CONTEXT + 1;
            j += 1;
        }
        let end = end.min(ops.len());
        let (mut la, mut lb) = (0, 0);
        for o in &ops[..start] {
            match o {
                Op::Same(..) => {
                    la += 1;
                    lb += 1;
                }
                Op::Del(_) => la += 1,
                Op::Add(_) => lb += 1,
            }
        }
        let na = ops[start..end]
            .iter()
            .filter(|o| !matches!(o, Op::Add(_)))
            .count();
        let nb = ops[start..end]
            .iter()
            .filter(|o| !matches!(o, Op::Del(_)))
            .count();
        out.push_str(&format!("@@ -{},{na} +{},{nb} @@\n", la + 1, lb + 1));
        for o in &ops[start..end] {
            match o {
                Op::Same(l) => out.push_str(&format!(" {l}\n")),
                Op::Del(l) => out.push_str(&format!("-{l}\n")),
                Op::Add(l) => out.push_str(&format!("+{l}\n")),
            }
        }
        i = j;
    }
    out
}

enum Op<'a> {
    Same(&'a str),
    Del(&'a str),
    Add(&'a str),
}

fn edit_script<'a>(a: &[&'a str], b: &[&'a str]) -> Vec<Op<'a>> {
    if a.len().saturating_mul(b.len()) > MAX_CELLS {
        let mut v: Vec<Op<'a>> = a.iter().map(|l| Op::Del(l)).collect();
        v.extend(b.iter().map(|l| Op::Add(l)));
        return v;
    }
    // lcs[i][j]: LCS length of a[i..] and b[j..].
    let (n, m) = (a.len(), b.len());
    let mut lcs = vec![0u32; (n + 1) * (m + 1)];
    let idx = |i: usize, j: usize| i * (m + 1) + j;
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[idx(i, j)] = if a[i] == b[j] {
                lcs[idx(i + 1, j + 1)] + 1
            } else {
                lcs[idx(i + 1, j)].max(lcs[idx(i, j + 1)])
            };
        }
    }
    let (mut i, mut j) = (0, 0);
    let mut ops = Vec::new();
    while i < n || j < m {
        if i < n && j < m && a[i] == b[j] {
            ops.push(Op::Same(a[i]));
            i += 1;
            j += 1;
        } else if i < n && (j == m || lcs[idx(i + 1, j)] >= lcs[idx(i, j + 1)]) {
            ops.push(Op::Del(a[i]));
            i += 1;
        } else {
            ops.push(Op::Add(b[j]));
            j += 1;
        }
    }
    ops
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_texts_give_nothing() {
        assert_eq!(unified("a\nb\n", "a\nb\n", "x", "y"), "");
    }

    #[test]
    fn an_insertion_is_one_hunk_with_context() {
        let old = "1\n2\n3\n4\n5\n6\n7\n8\n";
        let new = "1\n2\n3\n4\nnew\n5\n6\n7\n8\n";
        let d = unified(old, new, "a", "b");
        assert_eq!(
            d,
            "--- a\n+++ b\n@@ -2,6 +2,7 @@\n 2\n 3\n 4\n+new\n 5\n 6\n 7\n"
        );
    }

    #[test]
    fn a_change_is_a_deletion_and_an_addition() {
        let d = unified("a = 1\n", "a = 2\n", "a", "b");
        assert_eq!(d, "--- a\n+++ b\n@@ -1,1 +1,1 @@\n-a = 1\n+a = 2\n");
    }
}
