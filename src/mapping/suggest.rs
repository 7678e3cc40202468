//! "Did you mean ...?": the nearest of some candidates to a word by edit distance, for
//! registration's violations and TestMapping's warnings. Never on the row path.

/// Edit distance over characters (optimal string alignment: a swap of two neighbours is one
/// edit), ASCII case counted as half a change (all doubled to stay integers): `@Path` is nearer
/// `@path` than `@math` is.
fn distance(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let w = b.len() + 1;
    let mut d = vec![0; (a.len() + 1) * w];
    for i in 0..=a.len() {
        d[i * w] = i * 2;
    }
    for (j, cell) in d.iter_mut().enumerate().take(w) {
        *cell = j * 2;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let (ca, cb) = (a[i - 1], b[j - 1]);
            let sub = if ca == cb {
                0
            } else if ca.eq_ignore_ascii_case(&cb) {
                1
            } else {
                2
            };
            let mut best = (d[(i - 1) * w + j - 1] + sub)
                .min(d[(i - 1) * w + j] + 2)
                .min(d[i * w + j - 1] + 2);
            if i > 1 && j > 1 && ca == b[j - 2] && a[i - 2] == cb {
                best = best.min(d[(i - 2) * w + j - 2] + 2);
            }
            d[i * w + j] = best;
        }
    }
    d[a.len() * w + b.len()]
}

/// The candidate nearest `word`, when near enough to be a likely slip: at most two edits, and
/// at most a third of the longer word's characters. The first of equally near ones.
pub(crate) fn nearest<'c>(
    word: &str,
    candidates: impl IntoIterator<Item = &'c str>,
) -> Option<&'c str> {
    // Too long to compare cheaply: no suggestion.
    if word.len() > 256 {
        return None;
    }
    candidates
        .into_iter()
        // Past this many, the rest are not compared (a row may have thousands of columns).
        .take(2000)
        .filter(|c| *c != word && c.len() <= 256)
        .map(|c| (distance(word, c), c))
        .filter(|&(d, c)| {
            let longer = word.chars().count().max(c.chars().count());
            d <= 4 && d * 3 <= longer * 2
        })
        .min_by_key(|&(d, _)| d)
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_near_words_only() {
        let directives = [
            "@path",
            "@template",
            "@literal",
            "@if",
            "@case",
            "@arrayPath",
        ];
        assert_eq!(nearest("@paht", directives), Some("@path"));
        assert_eq!(nearest("@Path", directives), Some("@path"));
        assert_eq!(nearest("@tempalte", directives), Some("@template"));
        assert_eq!(nearest("@arraypath", directives), Some("@arrayPath"));
        assert_eq!(nearest("@ifx", directives), Some("@if"));
        assert_eq!(nearest("@nope", directives), None);
        assert_eq!(nearest("@path", directives), None);
        let columns = ["revenue", "user_id", "email"];
        assert_eq!(nearest("revnue", columns), Some("revenue"));
        assert_eq!(nearest("userid", columns), Some("user_id"));
        assert_eq!(nearest("Email", columns), Some("email"));
        assert_eq!(nearest("x", columns), None);
        assert_eq!(nearest("", columns), None);
        assert_eq!(nearest("ab", ["ba"]), None);
        assert_eq!(nearest("é", ["e"]), None);
    }
}
