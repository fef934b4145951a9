//! Answers of an `ask:` step handed, one by one as they arrive, to the step that consumes
//! them (`for_each: { answers: ASK }`).
//!
//! The scheduler opens the stream when it starts the ask (the consumer may start right after,
//! before any answer). The ask puts each accepted answer in it under the next free item
//! index, and ends it (complete, or stopped: paused, cancelled, failed); the consumer waits
//! for item `k`, runs it, and says when it needs no more (its `until` held, or it stopped),
//! which lets the ask stop waiting for people it no longer needs.
//!
//! What must stay true: an answer is in the stream only after the redactor knows it (a secret
//! is added when taken), and the stream always ends when the ask ends, however it ends (the
//! consumer would otherwise wait for ever).

use std::collections::BTreeMap;
use std::sync::Mutex;

use tokio::sync::watch;

/// One answer, as the consumer's item `index`.
#[derive(Debug, Clone)]
pub(super) struct Answer {
    pub(super) index: usize,
    /// `Null`: a secret answered before a resume, whose item is done (never needed again).
    pub(super) value: serde_json::Value,
}

/// How the ask ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum End {
    /// It has all its answers (or the consumer said it needs no more).
    Complete,
    /// Nobody answered in time: the run pauses; `resume` asks again.
    Paused(String),
    /// Cancelled or failed: no more answers will come.
    Stopped(String),
}

/// What the consumer gets when it asks for item `k`.
pub(super) enum Next {
    Answer(Answer),
    End(End),
}

#[derive(Default)]
struct State {
    answers: BTreeMap<usize, Answer>,
    end: Option<End>,
    /// Why the consumer needs no more answers.
    consumer_done: Option<String>,
}

/// The answers of one ask, shared by the ask and its consumer.
pub(super) struct AnswerStream {
    state: Mutex<State>,
    /// Bumped on every change; both sides wait on it.
    changed: watch::Sender<u64>,
}

impl AnswerStream {
    pub(super) fn new() -> AnswerStream {
        AnswerStream {
            state: Mutex::new(State::default()),
            changed: watch::channel(0).0,
        }
    }

    fn with<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        let r = match self.state.lock() {
            Ok(mut s) => f(&mut s),
            Err(p) => f(&mut p.into_inner()),
        };
        self.changed.send_modify(|n| *n = n.wrapping_add(1));
        r
    }

    fn read<R>(&self, f: impl FnOnce(&State) -> R) -> R {
        match self.state.lock() {
            Ok(s) => f(&s),
            Err(p) => f(&p.into_inner()),
        }
    }

    /// A change notification to wait on (taken before reading the state).
    pub(super) fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// The lowest item index no answer holds yet (after a resume, items done before keep
    /// theirs and new answers fill the gaps).
    pub(super) fn free_index(&self) -> usize {
        self.read(|s| (0..).find(|k| !s.answers.contains_key(k)).unwrap_or(0))
    }

    /// Hands an answer to the consumer.
    pub(super) fn push(&self, a: Answer) {
        self.with(|s| {
            s.answers.insert(a.index, a);
        });
    }

    /// The ask ended (the first end counts).
    pub(super) fn end(&self, end: End) {
        self.with(|s| {
            s.end.get_or_insert(end);
        });
    }

    pub(super) fn ended(&self) -> Option<End> {
        self.read(|s| s.end.clone())
    }

    /// The consumer needs no more answers (the first reason counts).
    pub(super) fn consumer_done(&self, why: String) {
        self.with(|s| {
            s.consumer_done.get_or_insert(why);
        });
    }

    pub(super) fn consumer_is_done(&self) -> Option<String> {
        self.read(|s| s.consumer_done.clone())
    }

    /// Item `k` if it arrived; else how the ask ended once no item `k` can come.
    pub(super) fn get(&self, k: usize) -> Option<Next> {
        self.read(|s| match (s.answers.get(&k), &s.end) {
            (Some(a), _) => Some(Next::Answer(a.clone())),
            // Ended, and no answer at or after `k`: nothing more comes.
            (None, Some(e)) if !s.answers.keys().any(|&i| i > k) => Some(Next::End(e.clone())),
            // Ended with a gap at `k` (a secret not asked again whose item is done later):
            // the consumer skips it.
            (None, Some(_)) => None,
            (None, None) => None,
        })
    }

    /// The first index after `k` that holds an answer (to skip a gap once the ask ended).
    pub(super) fn next_after(&self, k: usize) -> Option<usize> {
        self.read(|s| s.answers.range(k + 1..).next().map(|(i, _)| *i))
    }

    /// Every answer, by item index.
    pub(super) fn answers(&self) -> Vec<Answer> {
        self.read(|s| s.answers.values().cloned().collect())
    }
}

/// Ends the stream when the ask ends by any path (an early return, a panic unwinding).
pub(super) struct EndOnDrop(pub(super) Option<std::sync::Arc<AnswerStream>>);

impl Drop for EndOnDrop {
    fn drop(&mut self) {
        if let Some(s) = &self.0 {
            s.end(End::Stopped("the ask ended without its answers".into()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(index: usize) -> Answer {
        Answer {
            index,
            value: serde_json::json!(index),
        }
    }

    #[test]
    fn items_come_in_index_order_and_the_end_comes_after_the_last() {
        let s = AnswerStream::new();
        assert!(s.get(0).is_none());
        s.push(answer(1));
        assert_eq!(s.free_index(), 0);
        s.push(answer(0));
        assert_eq!(s.free_index(), 2);
        assert!(matches!(s.get(0), Some(Next::Answer(a)) if a.index == 0));
        s.end(End::Complete);
        s.end(End::Stopped("later".into()));
        assert!(matches!(s.get(1), Some(Next::Answer(_))));
        assert!(matches!(s.get(2), Some(Next::End(End::Complete))));
        assert_eq!(s.answers().len(), 2);
    }

    #[test]
    fn a_gap_left_by_a_resume_is_skipped_once_the_ask_ended() {
        let s = AnswerStream::new();
        s.push(answer(0));
        s.push(answer(2));
        assert!(s.get(1).is_none());
        s.end(End::Complete);
        assert!(s.get(1).is_none());
        assert_eq!(s.next_after(1), Some(2));
        s.consumer_done("until".into());
        assert_eq!(s.consumer_is_done().as_deref(), Some("until"));
    }
}
