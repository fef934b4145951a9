//! Values computed from a secret are secrets (attack report 12, findings 1, 2, 10 and
//! minors): input defaults, step `outputs:`, a child's `outputs:` through `uses:`, `for_each`
//! items, values parsed out of output that held a secret. Each is searched, in every
//! encoding, in everything the engine writes: terminal, `--output json`, plan, every file of
//! the run directory, `show` and the transcripts.

use base64::Engine as _;

use crate::exec::Scratch;
use crate::harness::runbook;

/// The encodings a program or the engine could write `v` in.
pub(crate) fn encodings(v: &str) -> Vec<String> {
    let b64 = base64::engine::general_purpose::STANDARD.encode(v);
    let url: String = v
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    let json = serde_json::to_string(v).unwrap_or_default();
    let ascii_json: String = v
        .chars()
        .map(|c| {
            if c.is_ascii() {
                c.to_string()
            } else {
                format!("\\u{:04x}", c as u32)
            }
        })
        .collect();
    let mut out = vec![
        v.to_string(),
        v.to_uppercase(),
        v.to_lowercase(),
        b64.trim_end_matches('=')[..b64.len().saturating_sub(4).max(4)].to_string(),
        v.bytes().map(|b| format!("{b:02x}")).collect(),
        url.clone(),
        url.to_lowercase(),
        json[1..json.len() - 1].to_string(),
        ascii_json,
    ];
    out.retain(|f| f.len() >= 6);
    out.sort();
    out.dedup();
    out
}

/// Fails if any of `values`, in any encoding, is in `text`.
pub(crate) fn assert_none(what: &str, text: &str, values: &[&str]) {
    for v in values {
        for f in encodings(v) {
            assert!(
                !text.contains(&f),
                "{what} leaks `{f}` (a form of `{v}`):\n{}",
                &text[..text.len().min(6000)]
            );
        }
    }
}

fn files(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            files(&p, out);
        } else {
            out.push(p);
        }
    }
}

/// Runs the scratch runbook every way (exec with JSON and plain progress, plan as text and
/// JSON, show, both transcripts) with `env`, and checks that none of `values` leaks anywhere,
/// run-directory files included. Returns the terminal text of the plain run.
pub(crate) fn run_everywhere(
    s: &Scratch,
    env: &[(&str, &str)],
    extra: &[&str],
    want_code: i32,
    values: &[&str],
) -> String {
    let rb = s.path("runbook.yaml").display().to_string();
    let runs = s.path("runs").display().to_string();
    let mut plain_text = String::new();
    for mode in [
        vec![
            "exec",
            &rb,
            "--yes",
            "--runs-dir",
            &runs,
            "--output",
            "json",
        ],
        vec![
            "exec",
            &rb,
            "--yes",
            "--runs-dir",
            &runs,
            "--progress",
            "plain",
        ],
        vec!["plan", &rb],
        vec!["plan", &rb, "--format", "json"],
    ] {
        let mut args: Vec<&str> = mode.clone();
        args.extend_from_slice(extra);
        let mut cmd = runbook(args.iter().map(|a| a.to_string()));
        for (k, v) in env {
            cmd = cmd.env(k, v);
        }
        let ran = cmd.run();
        let what = mode[..2].join(" ");
        if mode[0] == "exec" {
            assert_eq!(
                ran.code,
                Some(want_code),
                "{what}: {}{}",
                ran.stdout,
                ran.stderr
            );
        }
        assert_none(&format!("{what} {mode:?} stdout"), &ran.stdout, values);
        assert_none(&format!("{what} {mode:?} stderr"), &ran.stderr, values);
        if mode.contains(&"plain") {
            plain_text = format!("{}{}", ran.stdout, ran.stderr);
        }
    }
    let mut ids: Vec<String> = std::fs::read_dir(s.path("runs"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.'))
        .collect();
    ids.sort();
    assert_eq!(ids.len(), 2, "{ids:?}");
    for id in &ids {
        for cmd in [
            vec!["show", id.as_str(), "--runs-dir", &runs],
            vec!["transcript", id.as_str(), "--runs-dir", &runs],
            vec![
                "transcript",
                id.as_str(),
                "--runs-dir",
                &runs,
                "--format",
                "json",
            ],
        ] {
            let ran = runbook(cmd.iter().map(|a| a.to_string())).run();
            assert_none(&format!("{cmd:?}"), &ran.stdout, values);
            assert_none(&format!("{cmd:?} stderr"), &ran.stderr, values);
        }
    }
    let mut all = Vec::new();
    files(&s.path("runs"), &mut all);
    assert!(all.len() > 4, "{all:?}");
    for f in &all {
        let data = std::fs::read(f).unwrap_or_default();
        assert_none(
            &f.display().to_string(),
            &String::from_utf8_lossy(&data),
            values,
        );
    }
    assert!(
        plain_text.contains("********"),
        "nothing masked:\n{plain_text}"
    );
    plain_text
}

#[test]
fn an_input_default_computed_from_a_secret_is_a_secret() {
    let s = Scratch::new();
    s.runbook(
        r#"
runbook: def
version: 1
inputs:
  tok: { secret: true, from_env: TOK }
  x: { default: "{{ tok }}" }
  y: { default: "{{ tok | lower }}-sfx" }
  auth: { default: "Bearer {{ tok }}" }
  z: { type: list, default: ["{{ tok }}", "{{ tok | string | reverse }}"] }
  plain: { default: "visible-{{ 'value' }}" }
steps:
  - id: a
    title: "x is {{ x }}"
    run: echo "{{ x }} {{ y }} {{ auth }} {{ z | join(',') }} {{ plain }}"
"#,
    );
    let canary = "DefaultDerivedSecret-77";
    let text = run_everywhere(
        &s,
        &[("TOK", canary)],
        &[],
        0,
        &[
            canary,
            "defaultderivedsecret-77-sfx",
            "77-terceSdevireDtluafeD",
        ],
    );
    // Values not computed from a secret stay visible.
    assert!(text.contains("visible-value"), "{text}");
}

#[test]
fn outputs_items_and_child_outputs_computed_from_a_secret_are_secrets() {
    let s = Scratch::new();
    std::fs::create_dir_all(s.path("lib")).expect("lib");
    std::fs::write(
        s.path("lib/child.yaml"),
        r#"
runbook: child
version: 1
inputs:
  key: { secret: true }
steps:
  - id: s
    run: "true"
outputs:
  hint: "(key | string)[:8] ~ '...'"
  rev: key | string | reverse
"#,
    )
    .expect("child");
    s.runbook(
        r#"
runbook: out
version: 1
inputs:
  tok: { secret: true, from_env: TOK }
steps:
  - id: c
    run: echo "got $TK"
    env: { TK: "{{ tok }}" }
    outputs:
      r: tok | string | reverse
      s: tok | string | list | join('.')
      h: "(tok | string)[:9]"
      part: stdout | regex_search('got (.{8})')
      found: stdout | regex_findall('[A-Za-z0-9]{5}')
      rev: (stdout | trim)[::-1]
      shown: "'not-from-a-secret'"
  - id: fe
    for_each: "[(tok | string)[:9] ~ 'x', 'visible-item']"
    title: "item {{ item }}"
    run: echo "{{ item }}"
  - id: call
    uses: lib/child.yaml
    with: { key: "{{ tok }}" }
  - id: d
    needs: [c, call]
    title: "p={{ steps.c.outputs.h }} {{ steps.call.outputs.hint }}"
    run: |
      echo "R={{ steps.c.outputs.r }} S={{ steps.c.outputs.s }} P={{ steps.c.outputs.part }}"
      echo "F={{ steps.c.outputs.found }} V={{ steps.c.outputs.rev }}"
      echo "C={{ steps.call.outputs.rev }} {{ steps.c.outputs.shown }}"
  - id: e
    needs: [d]
    fail: "bad: {{ steps.c.outputs.s }} {{ steps.call.outputs.rev }}"
"#,
    );
    let canary = "OutputsSecretVal-31";
    let text = run_everywhere(
        &s,
        &[("TOK", canary)],
        &[],
        1,
        &[
            canary,
            "13-laVterceSstuptuO",
            "O.u.t.p.u.t.s",
            "OutputsSe",
            "OutputsSex",
            "OutputsS...",
            "Outpu",
            "tsSec",
            "retVa",
        ],
    );
    assert!(text.contains("not-from-a-secret"), "{text}");
    assert!(text.contains("visible-item"), "{text}");
}

#[test]
fn secret_inputs_obey_type_allowed_and_pattern_without_showing_the_value() {
    let s = Scratch::new();
    s.runbook(
        r#"
runbook: pat
version: 1
inputs:
  tok: { secret: true, from_env: TOK, pattern: "[a-z]+" }
  tok2: { secret: true, from_env: TOK2, allowed: [aaaaaaaaaa, bbbbbbbbbbb] }
  tok3: { secret: true, from_env: TOK3, type: int }
  tok4: { type: list, secret: true, from_env: TOK4, pattern: "[a-z]+" }
  url: { secret: true, from_env: URL, pattern: "http://127\\.0\\.0\\.1:[0-9]+" }
steps:
  - id: a
    env: { T: "{{ tok }}{{ tok2 }}{{ tok3 }}{{ tok4 }}{{ url }}" }
    run: echo hi
"#,
    );
    let good = [
        ("TOK", "abcdefghij"),
        ("TOK2", "aaaaaaaaaa"),
        ("TOK3", "1234567890"),
        ("TOK4", "abcdefghij,klmnopqrst"),
        ("URL", "http://127.0.0.1:9"),
    ];
    let bad = [
        ("TOK", "Bad-Value-0001", "must match ^(?:[a-z]+)$"),
        ("TOK2", "ccccccccccc", "must be one of the allowed values"),
        ("TOK3", "notanumber-1", "must be int"),
        (
            "TOK4",
            "abcdefghij,Bad-Item-0002",
            "(item 2) must match ^(?:[a-z]+)$",
        ),
        ("URL", "http://localhost:9", "must match ^(?:http://127"),
    ];
    let run = |env: &[(&str, &str)]| {
        let mut cmd = runbook([
            "exec".to_string(),
            s.path("runbook.yaml").display().to_string(),
            "--yes".into(),
            "--runs-dir".into(),
            s.path("runs").display().to_string(),
            "--output".into(),
            "json".into(),
        ]);
        for (k, v) in env {
            cmd = cmd.env(k, v);
        }
        cmd.run()
    };
    let ran = run(&good);
    assert_eq!(ran.code, Some(0), "{}{}", ran.stdout, ran.stderr);
    for (var, value, why) in bad {
        let env: Vec<(&str, &str)> = good
            .iter()
            .map(|&(k, v)| if k == var { (k, value) } else { (k, v) })
            .collect();
        let ran = run(&env);
        assert_eq!(ran.code, Some(2), "{var}: {}{}", ran.stdout, ran.stderr);
        let text = format!("{}{}", ran.stdout, ran.stderr);
        assert!(text.contains(why), "{var}: {text}");
        assert!(text.contains("the value is not shown"), "{var}: {text}");
        assert_none(var, &text, &[value]);
    }
}

#[test]
fn a_non_ascii_secret_is_masked_json_escaped_and_upper_cased() {
    let s = Scratch::new();
    s.runbook(
        r#"
runbook: uni
version: 1
inputs:
  tok: { secret: true, from_env: TOK }
steps:
  - id: a
    env: { T: "{{ tok }}" }
    run: |
      python3 -c 'import os,json,urllib.parse;t=os.environ["T"];print(json.dumps({"k":t}));print(t.upper());print(t.lower());print(urllib.parse.quote(t.upper()))'
      printf '%s\n' "$T"
"#,
    );
    let canary = "Geheimnis-Schlüssel-Жук-😀-42";
    run_everywhere(
        &s,
        &[("TOK", canary)],
        &[],
        0,
        &[
            canary,
            "Schl\\u00fcssel-\\u0416",
            "SCHLÜSSEL-ЖУК",
            "\\ud83d\\ude00-42",
        ],
    );
}

/// Fails if the first 8 characters of any encoding of `v` are in `text` (a cut secret).
fn assert_no_prefix(what: &str, text: &str, v: &str) {
    for f in encodings(v) {
        let p: String = f.chars().take(8).collect();
        assert!(
            !text.contains(&p),
            "{what} leaks the start `{p}` of `{f}`:\n{}",
            &text[..text.len().min(6000)]
        );
    }
}

/// Everything a run left: its terminal text and every file of the runs directory.
fn everything(s: &Scratch, ran: &crate::harness::Ran) -> String {
    let mut text = format!("{}{}", ran.stdout, ran.stderr);
    let mut all = Vec::new();
    files(&s.path("runs"), &mut all);
    for f in &all {
        text.push_str(&String::from_utf8_lossy(
            &std::fs::read(f).unwrap_or_default(),
        ));
    }
    text
}

#[test]
fn text_is_cut_only_after_its_secrets_are_masked() {
    let canary = "Secret/Value with spaces+42";
    let server = crate::httpd::Server::start(None, |req| crate::httpd::Response {
        status: 200,
        content_type: "text/plain",
        body: format!("{}\nsecond line\n", req.path),
        location: None,
    });
    for pad in [150, 160, 170, 180] {
        let s = Scratch::new();
        s.runbook(&format!(
            r#"
runbook: cut
version: 1
inputs:
  tok: {{ secret: true, from_env: TOK }}
steps:
  - id: w
    wait:
      run: 'printf "%0{pad}d%s\n" 0 "$T"'
      until: "false"
      every: 200ms
      timeout: 500ms
    env: {{ T: "{{{{ tok }}}}" }}
    on_failure: continue
  - id: h
    http:
      get: "http://127.0.0.1:{port}/echo/{pads}"
      query: {{ q: "{{{{ tok }}}}" }}
"#,
            port = server.port,
            pads = "p".repeat(pad - 110),
        ));
        for mode in [["--output", "json"], ["--progress", "plain"]] {
            let ran = runbook([
                "exec",
                &s.path("runbook.yaml").display().to_string(),
                "--yes",
                "--runs-dir",
                &s.path("runs").display().to_string(),
                mode[0],
                mode[1],
            ])
            .env("TOK", canary)
            .run();
            let text = everything(&s, &ran);
            assert!(text.contains("********"), "{text}");
            assert!(text.contains("0000"), "{text}");
            assert_no_prefix(&format!("pad {pad} {mode:?}"), &text, canary);
        }
    }
    assert!(!server.requests().is_empty());
}

#[test]
fn an_error_over_a_secret_does_not_quote_it() {
    let s = Scratch::new();
    s.runbook(
        r#"
runbook: rx
version: 1
inputs:
  tok: { secret: true, from_env: TOK }
  b64: { secret: true, from_env: B64 }
steps:
  - id: a
    env: { X: "{{ 'x' | regex_search(tok) }}" }
    run: "true"
    on_failure: continue
  - id: b
    env: { X: "{{ b64 | b64decode }}" }
    run: "true"
"#,
    );
    let canary = "Kx9-secretpart1\npw(Zq7-secretpart2";
    for mode in [["--output", "json"], ["--progress", "plain"]] {
        let ran = runbook([
            "exec",
            &s.path("runbook.yaml").display().to_string(),
            "--yes",
            "--runs-dir",
            &s.path("runs").display().to_string(),
            mode[0],
            mode[1],
        ])
        .env("TOK", canary)
        .env("B64", "QUJDREVGR0hJSktM$QUJD")
        .run();
        assert_eq!(ran.code, Some(1), "{}{}", ran.stdout, ran.stderr);
        let text = everything(&s, &ran);
        assert!(text.contains("bad regular expression (not shown"), "{text}");
        assert!(text.contains("b64decode: not base64"), "{text}");
        for piece in [
            "secretpart1",
            "secretpart2",
            "Zq7-",
            "Kx9-",
            "offset",
            "symbol 36",
        ] {
            assert!(!text.contains(piece), "{mode:?} leaks `{piece}`:\n{text}");
        }
        assert_none("run", &text, &[canary, "QUJDREVGR0hJSktM$QUJD"]);
    }
}

#[test]
fn raw_on_a_secret_reached_any_way_is_refused_at_run_time() {
    let s = Scratch::new();
    // Through a computed key `validate` refuses it first (`raw-computed-key`)…
    s.runbook(
        r#"
runbook: raw
version: 1
inputs:
  tok: { secret: true, from_env: TOK }
steps:
  - id: a
    run: "echo {{ inputs['t' ~ 'ok'] | raw }} > {D}/a.out"
    on_failure: continue
  - id: b
    run: "echo {{ (inputs['t' ~ 'ok'] ~ '-x') | raw }} > {D}/b.out"
    on_failure: continue
  - id: c
    run: "echo {{ 'plain-fragment' | raw }} > {D}/c.out"
"#,
    );
    let checked = runbook([
        "validate".to_string(),
        s.path("runbook.yaml").display().to_string(),
    ])
    .run();
    assert_eq!(checked.code, Some(2), "{}", checked.stderr);
    assert_eq!(
        checked.stderr.matches("error[raw-computed-key]").count(),
        2,
        "{}",
        checked.stderr
    );
    // …and a value computed from the secret at run time, which `validate` cannot see, is
    // refused when the command is rendered.
    s.runbook(
        r#"
runbook: raw
version: 1
inputs:
  tok: { secret: true, from_env: TOK }
steps:
  - id: d
    run: echo derived
    outputs:
      r: tok | string | reverse
  - id: a
    needs: [d]
    run: "echo {{ steps.d.outputs.r | raw }} > {D}/a.out"
    on_failure: continue
  - id: b
    needs: [d]
    run: "echo {{ (steps.d.outputs.r ~ '-x') | raw }} > {D}/b.out"
    on_failure: continue
  - id: c
    run: "echo {{ 'plain-fragment' | raw }} > {D}/c.out"
"#,
    );
    let canary = "RawSecretValue-XYZ";
    let ran = runbook([
        "exec",
        &s.path("runbook.yaml").display().to_string(),
        "--yes",
        "--runs-dir",
        &s.path("runs").display().to_string(),
        "--output",
        "json",
    ])
    .env("TOK", canary)
    .run();
    // Both steps fail (`on_failure: continue`: the run goes on).
    assert_eq!(ran.code, Some(0), "{}{}", ran.stdout, ran.stderr);
    assert_eq!(
        ran.stdout.matches("cannot be applied to a secret").count(),
        4
    );
    let text = everything(&s, &ran);
    assert!(
        text.contains("`| raw` cannot be applied to a secret"),
        "{text}"
    );
    assert_none("run", &text, &[canary]);
    // Neither command ran (the secret never reached argv); the plain fragment did.
    assert!(!s.path("a.out").exists() && !s.path("b.out").exists());
    assert_eq!(s.read("c.out"), "plain-fragment\n");
}

#[test]
fn a_skipped_steps_note_is_redacted_in_the_summary() {
    let s = Scratch::new();
    s.runbook(
        r#"
runbook: skip
version: 1
inputs:
  tok: { secret: true, from_env: TOK }
steps:
  - id: a
    when: "(tok | string) != 'SkipSecretNote-01'"
    run: echo ran
  - id: b
    run: echo other
"#,
    );
    for mode in [["--output", "json"], ["--progress", "plain"]] {
        let ran = runbook([
            "exec",
            &s.path("runbook.yaml").display().to_string(),
            "--yes",
            "--runs-dir",
            &s.path("runs").display().to_string(),
            mode[0],
            mode[1],
        ])
        .env("TOK", "SkipSecretNote-01")
        .run();
        assert_eq!(ran.code, Some(0), "{}{}", ran.stdout, ran.stderr);
        let text = everything(&s, &ran);
        assert!(text.contains("skipped"), "{text}");
        assert_none(&format!("{mode:?}"), &text, &["SkipSecretNote-01"]);
    }
}

/// Attack report 13, D10: a multi-line secret (a PEM key, a token file) leaked line by line:
/// CRLF line ends (`ssh -t`, Windows hosts, HTTP APIs), one line alone (`head -1`), a line
/// quoted in the failure reason of a step. Each line is masked wherever the engine writes.
#[test]
fn each_line_of_a_multi_line_secret_is_masked_crlf_and_alone() {
    let s = Scratch::new();
    let l1 = "Line1_of_the_Secret_KEY_aaaa";
    let l2 = "Line2_of_the_Secret_KEY_bbbb";
    let l3 = "Line3_of_the_Secret_KEY_cccc";
    let key = format!("{l1}\n{l2}\n{l3}");
    std::fs::write(s.path("key"), &key).unwrap_or_default();
    s.runbook(&format!(
        r#"
runbook: multiline
version: 1
inputs:
  key: {{ secret: true, from_file: {file} }}
steps:
  - id: crlf
    run: printf '%s\n' "{{{{ key }}}}" | sed 's/$/\r/'
  - id: first
    run: printf '%s\n' "{{{{ key }}}}" | head -1
  - id: last
    run: printf '%s\n' "{{{{ key }}}}" | tail -1 | tr -d '\n'
  - id: quoted
    run: printf '%s\n' "{{{{ key }}}}" | sed -n 2p >&2; exit 1
"#,
        file = s.path("key").display()
    ));
    let text = run_everywhere(&s, &[], &[], 1, &[l1, l2, l3]);
    assert!(text.contains("crlf"), "{text}");
}
