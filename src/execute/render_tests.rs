//! Property: for random runbooks, what the plan shows is what the engine hands the runner
//! and the HTTP client (commands, their environment and stdin; method, URL, headers, query,
//! body). Both go through the one render function of each step kind; this pins that no
//! second path creeps back in.

use std::sync::{Arc, Mutex};

use proptest::prelude::*;
use tokio::sync::watch;

use super::{Options, Prior, Services};
use crate::exit::ExitStatus;
use crate::plan::PlannedAction;
use crate::runner::{
    BoxFuture, Cancel, CommandOutcome, CommandRunner, CommandSpec, HttpClient, HttpRequest,
    HttpResponse, LineSink, StepError,
};

#[derive(Default)]
struct Seen {
    commands: Mutex<Vec<CommandSpec>>,
    requests: Mutex<Vec<HttpRequest>>,
}

struct Runner(Arc<Seen>);

impl CommandRunner for Runner {
    fn run<'a>(
        &'a self,
        spec: CommandSpec,
        _sink: LineSink,
        _cancel: Cancel,
    ) -> BoxFuture<'a, CommandOutcome> {
        if let Ok(mut c) = self.0.commands.lock() {
            c.push(spec);
        }
        Box::pin(async {
            CommandOutcome {
                exit_code: Some(0),
                ..CommandOutcome::default()
            }
        })
    }
}

struct Client(Arc<Seen>);

impl HttpClient for Client {
    fn send<'a>(
        &'a self,
        req: HttpRequest,
        _cancel: Cancel,
    ) -> BoxFuture<'a, Result<HttpResponse, StepError>> {
        if let Ok(mut r) = self.0.requests.lock() {
            r.push(req);
        }
        Box::pin(async {
            Ok(HttpResponse {
                status: 200,
                ..HttpResponse::default()
            })
        })
    }
}

/// Input values: shell and URL metacharacters included (no `{`: values are data, but a
/// runbook author's literal text is not generated from them).
fn value() -> impl Strategy<Value = String> {
    proptest::string::string_regex("[a-zA-Z0-9 ;'\"$&|/?=%#@:.-]{0,12}").expect("regex")
}

/// Command templates that validate (values unquoted or in double quotes).
const COMMANDS: &[&str] = &[
    "echo {{ a }}",
    "echo \"x {{ b }} y\" {{ a }}",
    "printf '%s\\n' {{ b }} | wc -c",
    "test -n \"{{ a }}{{ b }}\"",
];

#[derive(Debug, Clone)]
enum Kind {
    Run { cmd: usize, env: bool, stdin: bool },
    Http { json: bool, query: bool },
}

fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![
        (0..COMMANDS.len(), any::<bool>(), any::<bool>()).prop_map(|(cmd, env, stdin)| Kind::Run {
            cmd,
            env,
            stdin
        }),
        (any::<bool>(), any::<bool>()).prop_map(|(json, query)| Kind::Http { json, query }),
    ]
}

fn yaml(kinds: &[Kind]) -> String {
    let mut y = String::from(
        "runbook: prop\nversion: 1\ninputs:\n  a: { required: true }\n  b: { required: true }\nsteps:\n",
    );
    for (i, k) in kinds.iter().enumerate() {
        y.push_str(&format!("  - id: s{i}\n"));
        if i > 0 {
            y.push_str(&format!("    needs: [s{}]\n", i - 1));
        }
        match k {
            Kind::Run { cmd, env, stdin } => {
                y.push_str(&format!("    run: {:?}\n", COMMANDS[*cmd]));
                if *env {
                    y.push_str("    env: { NODE: \"n-{{ a }}\" }\n");
                }
                if *stdin {
                    y.push_str("    stdin: \"{{ b }}\\n\"\n");
                }
            }
            Kind::Http { json, query } => {
                y.push_str("    http:\n      post: \"http://127.0.0.1:9/v1/{{ a }}?x={{ b }}\"\n");
                y.push_str("      headers: { X-Node: \"{{ a }}\" }\n");
                if *query {
                    y.push_str("      query: { q: \"{{ b }}\" }\n");
                }
                if *json {
                    y.push_str("      json: { node: \"{{ a }}\", list: [\"{{ b }}\", 3, true] }\n");
                } else {
                    y.push_str("      body: \"raw {{ b }}\"\n");
                }
            }
        }
    }
    y
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 40, ..ProptestConfig::default() })]

    #[test]
    fn the_plan_shows_what_the_engine_hands_the_runner(
        kinds in proptest::collection::vec(kind(), 1..6),
        a in value(),
        b in value(),
    ) {
        let src = yaml(&kinds);
        let loaded = crate::load::load_bytes("prop.yaml".into(), src.clone().into_bytes());
        let v = crate::validate::validate(&loaded);
        prop_assert!(!v.has_errors(false), "{src}\n{:?}", v.diagnostics.iter().map(|d| &d.message).collect::<Vec<_>>());
        let Some(rb) = v.runbook else { return Err(TestCaseError::fail("no runbook")) };
        let provided = crate::inputs::Provided {
            pairs: vec![("a".into(), a), ("b".into(), b)],
            file: Vec::new(),
        };
        let inputs = crate::inputs::resolve(&rb, &provided, None)
            .map_err(|e| TestCaseError::fail(format!("{e:?}")))?;
        // A plan that refuses a value (e.g. one that would become an option) must be matched
        // by an engine that refuses it too, before anything runs.
        let plan = crate::plan::build(&rb, &inputs, "prop.yaml").ok();

        let seen = Arc::new(Seen::default());
        let dir = tempfile::tempdir().map_err(|e| TestCaseError::fail(e.to_string()))?;
        let opts = Options {
            run_id: "0123456789abcdef".into(),
            run_dir: dir.path().to_path_buf(),
            file: "prop.yaml".into(),
            parallel: 1,
            answers: super::Answers::default(),
            no_rollback: false,
            confirm_rollback: false,
            user: "tester".into(),
            host: "here".into(),
            file_sha256: String::new(),
            lock: None,
            remote: None,
        };
        let services = Services {
            local: Some(Arc::new(Runner(seen.clone()))),
            http: Some(Arc::new(Client(seen.clone()))),
            ..Services::default()
        };
        let (_tx, rx) = watch::channel(0u32);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        let outcome = rt.block_on(super::execute(
            Arc::new(rb),
            Arc::new(inputs),
            opts,
            Vec::new(),
            services,
            rx,
            Prior::default(),
        ));
        let commands = seen.commands.lock().map(|c| c.clone()).unwrap_or_default();
        let requests = seen.requests.lock().map(|r| r.clone()).unwrap_or_default();
        let Some(plan) = plan else {
            prop_assert_ne!(outcome.status, ExitStatus::Success, "the plan refused, the run did not");
            return Ok(());
        };
        prop_assert_eq!(outcome.status, ExitStatus::Success, "{}", outcome.reason);

        let (mut c, mut r) = (commands.iter(), requests.iter());
        for step in &plan.steps {
            match &step.action {
                PlannedAction::Run { command, env, stdin } => {
                    let Some(spec) = c.next() else {
                        return Err(TestCaseError::fail(format!("{} was not run", step.id)));
                    };
                    prop_assert_eq!(&spec.command, command);
                    let ran: Vec<(String, String)> = spec
                        .env
                        .iter()
                        .filter(|(k, _)| k != "RUNBOOK_RUN_ID" && k != "RUNBOOK_STEP")
                        .cloned()
                        .collect();
                    prop_assert_eq!(&ran, env);
                    prop_assert_eq!(&spec.stdin, stdin);
                }
                PlannedAction::Http(p) => {
                    let Some(req) = r.next() else {
                        return Err(TestCaseError::fail(format!("{} was not sent", step.id)));
                    };
                    prop_assert_eq!(&req.method, &p.method);
                    prop_assert_eq!(&req.url, &p.url);
                    prop_assert_eq!(&req.headers, &p.headers);
                    prop_assert_eq!(&req.query, &p.query);
                    let body = req.body.as_ref().map(|b| String::from_utf8_lossy(b).into_owned());
                    prop_assert_eq!(&body, &p.body);
                }
                other => return Err(TestCaseError::fail(format!("unexpected action {other:?}"))),
            }
        }
        prop_assert!(c.next().is_none() && r.next().is_none(), "more ran than the plan shows");
    }
}
