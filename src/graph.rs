//! The step graph: topological waves (Kahn) and dependency cycles reported as a path.
//!
//! Hand-written rather than petgraph because an operator needs the whole loop
//! (`a → b → c → a`), not one node of it.

/// Steps grouped in waves: every step's dependencies are in earlier waves.
/// `deps[i]` lists the indices step `i` needs. Returns the waves, or a cycle as a list of
/// indices where the last needs the first.
pub(crate) fn waves(deps: &[Vec<usize>]) -> Result<Vec<Vec<usize>>, Vec<usize>> {
    let n = deps.len();
    let mut indegree: Vec<usize> = deps.iter().map(Vec::len).collect();
    let mut dependants: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (i, ds) in deps.iter().enumerate() {
        for &d in ds {
            dependants[d].push(i);
        }
    }
    let mut current: Vec<usize> = (0..n).filter(|&i| indegree[i] == 0).collect();
    let mut out = Vec::new();
    let mut placed = 0;
    while !current.is_empty() {
        placed += current.len();
        let mut next = Vec::new();
        for &i in &current {
            for &j in &dependants[i] {
                indegree[j] -= 1;
                if indegree[j] == 0 {
                    next.push(j);
                }
            }
        }
        next.sort_unstable();
        out.push(std::mem::replace(&mut current, next));
    }
    if placed == n {
        Ok(out)
    } else {
        Err(find_cycle(deps, &indegree))
    }
}

/// Finds one cycle among the nodes Kahn could not place (indegree > 0).
fn find_cycle(deps: &[Vec<usize>], indegree: &[usize]) -> Vec<usize> {
    let Some(start) = (0..deps.len()).find(|&i| indegree[i] > 0) else {
        return Vec::new();
    };
    // Every unplaced node has an unplaced dependency; walk them until a node repeats.
    let mut seen_at = vec![usize::MAX; deps.len()];
    let mut path = Vec::new();
    let mut node = start;
    loop {
        if seen_at[node] != usize::MAX {
            let mut cycle = path.split_off(seen_at[node]);
            // Present it in "needs" order reversed: a → b means a runs before b.
            cycle.reverse();
            return cycle;
        }
        seen_at[node] = path.len();
        path.push(node);
        match deps[node].iter().copied().find(|&d| indegree[d] > 0) {
            Some(d) => node = d,
            None => return path,
        }
    }
}

/// Transitive dependencies of every step, as bitsets (`n²/8` bytes: 12.5 MB for 10,000 steps,
/// where index lists would take gigabytes for a long chain).
pub(crate) struct Ancestors {
    words: usize,
    bits: Vec<u64>,
}

impl Ancestors {
    /// `order` must be a topological order (the flattened waves).
    pub(crate) fn new(deps: &[Vec<usize>], order: &[usize]) -> Ancestors {
        let n = deps.len();
        let words = n.div_ceil(64);
        let mut bits = vec![0u64; words * n];
        for &i in order {
            for &d in &deps[i] {
                let (lo, hi) = (d.min(i), d.max(i));
                let (left, right) = bits.split_at_mut(hi * words);
                let (dst, src) = if i > d {
                    (&mut right[..words], &left[lo * words..lo * words + words])
                } else {
                    (&mut left[lo * words..lo * words + words], &right[..words])
                };
                for (a, b) in dst.iter_mut().zip(src) {
                    *a |= *b;
                }
                dst[d / 64] |= 1 << (d % 64);
            }
        }
        Ancestors { words, bits }
    }

    /// Whether step `a` is (transitively) needed by step `b`.
    pub(crate) fn is_ancestor(&self, a: usize, b: usize) -> bool {
        self.bits
            .get(b * self.words + a / 64)
            .is_some_and(|w| w & (1 << (a % 64)) != 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waves_follow_dependencies() {
        let deps = vec![vec![], vec![0], vec![0], vec![1, 2]];
        assert_eq!(waves(&deps), Ok(vec![vec![0], vec![1, 2], vec![3]]));
    }

    #[test]
    fn cycle_is_a_path() {
        // 0 needs 2, 1 needs 0, 2 needs 1: 0 → 1 → 2 → 0
        let deps = vec![vec![2], vec![0], vec![1], vec![]];
        let cycle = waves(&deps).err().unwrap_or_default();
        assert_eq!(cycle.len(), 3);
        for w in 0..3 {
            let (a, b) = (cycle[w], cycle[(w + 1) % 3]);
            assert!(deps[b].contains(&a), "{a} should run before {b}");
        }
    }

    #[test]
    fn ancestors_are_transitive() {
        let deps = vec![vec![], vec![0], vec![1], vec![]];
        let anc = Ancestors::new(&deps, &[0, 1, 2, 3]);
        assert!(anc.is_ancestor(0, 2));
        assert!(anc.is_ancestor(1, 2));
        assert!(!anc.is_ancestor(2, 0));
        assert!(!anc.is_ancestor(3, 2));
    }
}
