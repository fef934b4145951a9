//! Resuming past steps that run again although steps after them finished: a secret `ask:`
//! (its answer is never journaled, so it is asked again) or a step whose outputs were
//! journaled masked. The steps after it that were restored as done do not make the steps
//! after *them* ready: anything downstream that has still to run waits until the step
//! running again is done (it may read `steps.q` through a restored step's `needs`).

/// For each step still to run (`restored[i]` false), the steps it must wait for besides its
/// own `needs`: its ancestors that run again and have a descendant restored as done.
/// Empty for a fresh run (nothing restored).
pub(super) fn waits_for(deps: &[Vec<usize>], restored: &[bool]) -> Vec<Vec<usize>> {
    let n = deps.len();
    let ancestors: Vec<Vec<bool>> = (0..n).map(|i| ancestors_of(deps, i)).collect();
    // Steps that run again while something after them is restored.
    let again: Vec<usize> = (0..n)
        .filter(|&r| !restored[r] && (0..n).any(|d| restored[d] && ancestors[d][r]))
        .collect();
    (0..n)
        .map(|i| {
            if restored[i] {
                return Vec::new();
            }
            again.iter().copied().filter(|&r| ancestors[i][r]).collect()
        })
        .collect()
}

/// Which steps `i` depends on, directly or not.
fn ancestors_of(deps: &[Vec<usize>], i: usize) -> Vec<bool> {
    let mut seen = vec![false; deps.len()];
    let mut todo: Vec<usize> = deps.get(i).cloned().unwrap_or_default();
    while let Some(d) = todo.pop() {
        if d < seen.len() && !seen[d] {
            seen[d] = true;
            todo.extend(deps[d].iter().copied());
        }
    }
    seen
}

#[cfg(test)]
mod tests {
    use super::waits_for;

    #[test]
    fn a_step_after_a_restored_one_waits_for_the_ask_asked_again() {
        // q -> use -> gate -> use2; `use` restored, q asked again.
        let deps = vec![vec![], vec![0], vec![1], vec![2]];
        let w = waits_for(&deps, &[false, true, false, false]);
        let none: Vec<usize> = Vec::new();
        assert_eq!(w, vec![none.clone(), none, vec![0], vec![0]]);
    }

    #[test]
    fn a_fresh_run_waits_for_nothing_more() {
        let deps = vec![vec![], vec![0], vec![1]];
        let w = waits_for(&deps, &[false, false, false]);
        assert!(w.iter().all(Vec::is_empty));
    }

    #[test]
    fn an_unrelated_branch_does_not_wait() {
        // q -> use ; other -> after (independent)
        let deps = vec![vec![], vec![0], vec![], vec![2]];
        let w = waits_for(&deps, &[false, true, true, false]);
        assert!(w.iter().all(Vec::is_empty));
    }
}
