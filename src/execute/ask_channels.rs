//! Where answers to an `ask:` come from besides the operator's terminal: `runbook answer` on
//! this machine (the Unix socket of `runner::ask_socket`, identity = the OS user the kernel
//! reports) or, with a shared store, from any machine (identity = the database role). Both
//! feed one channel of [`Incoming`] answers, each with where to send the engine's verdict.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};

use super::shared::Shared;
use crate::event::Event;
use crate::runner::ask_socket::{self, Hello, Verdict};

/// One answer that came through the shared store: its database role, the value, and where
/// to send the engine's verdict.
pub struct StoreAnswer {
    pub role: String,
    pub value: String,
    pub verdict: oneshot::Sender<Verdict>,
}

/// How long one connected answerer may take to send a value.
const ANSWER_WAIT: Duration = Duration::from_secs(15 * 60);

/// An answer from `runbook answer`: the OS user (from the kernel) or database role, the raw
/// value, and where to send the verdict.
pub(super) struct Incoming {
    pub(super) user: String,
    pub(super) value: String,
    pub(super) verdict: oneshot::Sender<Verdict>,
}

/// The open channels of one ask; dropping it closes them (the socket, the store's ask).
pub(super) struct Channels {
    _accept: AbortOnDrop,
    _feed: Option<Box<dyn std::any::Any + Send>>,
    /// Someone else can answer (the socket or the store is open).
    pub(super) open: bool,
    /// Answers taken so far, for the next answerer's [`Hello`].
    pub(super) have: Arc<AtomicU32>,
    /// The ask could not be published in the shared store (attack 13, D0: nobody may
    /// answer an ask that is not there under this engine's role): the run pauses.
    pub(super) unpublished: bool,
}

/// Opens the channels of ask `id` (only for a journaled run: it has an owner the answerer
/// can check). With the shared store every answer comes through it, so the local socket
/// stays closed; the store is asked only when the run waits for answers.
pub(super) fn open(sh: &Shared, id: &str, hello: &Hello, tx: &mpsc::Sender<Incoming>) -> Channels {
    let remote = sh.opts.remote.as_ref();
    let store = remote.and_then(|r| r.answers.store());
    let wait = remote.is_some_and(|r| r.wait);
    let have = Arc::new(AtomicU32::new(hello.have));
    let listener = match remote {
        Some(_) if store.is_none() => match ask_socket::listen(&sh.opts.run_id, id) {
            Ok(l) => Some(l),
            Err(e) => {
                sh.emit(Event::Warning {
                    message: format!("cannot open the answer channel for `{id}` ({e}): only this terminal can answer"),
                });
                None
            }
        },
        _ => None,
    };
    let open = listener.is_some() || store.is_some();
    let accept = listener.map(|l| {
        let (tx, hello, have) = (tx.clone(), hello.clone(), have.clone());
        tokio::spawn(async move {
            loop {
                let Ok((conn, _)) = l.accept().await else {
                    continue;
                };
                let mut hello = hello.clone();
                hello.have = have.load(Ordering::SeqCst);
                tokio::spawn(serve(conn, hello, tx.clone()));
            }
        })
    });
    let (feed, unpublished) = match (remote, store) {
        (Some(r), Some(_)) if wait => match store_feed(sh, r, id, hello, tx) {
            Some(f) => (Some(f), false),
            None => (None, true),
        },
        _ => (None, false),
    };
    Channels {
        _accept: AbortOnDrop(accept),
        _feed: feed,
        open,
        have,
        unpublished,
    }
}

/// Publishes the ask in the shared store; its answers join the others on `tx`.
fn store_feed(
    sh: &Shared,
    remote: &super::RemoteGates,
    id: &str,
    hello: &Hello,
    tx: &mpsc::Sender<Incoming>,
) -> Option<Box<dyn std::any::Any + Send>> {
    let (stx, mut srx) = mpsc::channel::<StoreAnswer>(16);
    match remote.answers.ask_feed(hello, stx) {
        Ok(f) => {
            let tx = tx.clone();
            tokio::spawn(async move {
                while let Some(a) = srx.recv().await {
                    let inc = Incoming {
                        user: a.role,
                        value: a.value,
                        verdict: a.verdict,
                    };
                    if tx.send(inc).await.is_err() {
                        break;
                    }
                }
            });
            Some(f)
        }
        Err(e) => {
            sh.emit(Event::Warning {
                message: format!("cannot publish `{id}` in the store: {e}"),
            });
            None
        }
    }
}

/// Aborts the accepting task when the ask ends (the socket closes with it).
struct AbortOnDrop(Option<tokio::task::JoinHandle<()>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        if let Some(h) = &self.0 {
            h.abort();
        }
    }
}

/// One connection from `runbook answer`: say what is asked, read the value, pass it to the
/// step with the peer's uid (from the kernel), send back the verdict.
async fn serve(mut conn: tokio::net::UnixStream, hello: Hello, tx: mpsc::Sender<Incoming>) {
    let Ok(cred) = conn.peer_cred() else {
        return;
    };
    let uid = cred.uid();
    let Ok(mut line) = serde_json::to_vec(&hello) else {
        return;
    };
    line.push(b'\n');
    if conn.write_all(&line).await.is_err() {
        return;
    }
    let (rd, mut wr) = conn.split();
    let mut reader = tokio::io::BufReader::new(rd).take(ask_socket::MAX_LINE);
    let mut buf = Vec::new();
    let read = tokio::time::timeout(ANSWER_WAIT, reader.read_until(b'\n', &mut buf)).await;
    let verdict = match read {
        Ok(Ok(n)) if n > 0 => match serde_json::from_slice::<ask_socket::Reply>(&buf) {
            Ok(reply) => {
                let (vtx, vrx) = oneshot::channel();
                if tx
                    .send(Incoming {
                        user: crate::sys::user_name(uid),
                        value: reply.value,
                        verdict: vtx,
                    })
                    .await
                    .is_err()
                {
                    return;
                }
                match vrx.await {
                    Ok(v) => v,
                    Err(_) => Verdict {
                        ok: false,
                        message: "the run stopped asking before taking the answer".into(),
                    },
                }
            }
            Err(_) => Verdict {
                ok: false,
                message: "not an answer".into(),
            },
        },
        _ => return,
    };
    buf.iter_mut().for_each(|b| *b = 0);
    if let Ok(mut out) = serde_json::to_vec(&verdict) {
        out.push(b'\n');
        let _ = wr.write_all(&out).await;
    }
}
