use super::file::{copy_run, create_run_dir};
use super::*;
use crate::event::{Event, Stamped};

fn journal_of(dir: &Path, n: usize) {
    let mut j = journal::Journal::open(&RunDir::new(dir).files()).unwrap();
    for i in 0..n {
        let e = Stamped {
            at: crate::event::now(),
            event: Event::Warning {
                message: format!("record {i}"),
            },
        };
        crate::event::Observer::on_event(&mut j, &e).unwrap();
    }
}

#[test]
fn run_ids_cannot_leave_the_runs_directory() {
    assert!(check_id("20261129-040509-held-3bb73e8b6137cd57").is_ok());
    for bad in ["", ".", "..", "../x", "a/b", ".hidden", "a\nb", "a b"] {
        assert!(check_id(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn a_copy_has_the_same_bytes_and_a_broken_chain_is_not_copied() {
    let src = tempfile::tempdir().unwrap();
    let run = src.path().join("run-1");
    std::fs::create_dir(&run).unwrap();
    journal_of(&run, 5);
    let dest = tempfile::tempdir().unwrap();
    let copy = copy_run(&run, dest.path()).unwrap();
    let (run, copy) = (RunDir::new(&run), RunDir::new(&copy));
    assert_eq!(
        std::fs::read(run.journal()).unwrap(),
        std::fs::read(copy.journal()).unwrap()
    );
    let loaded = journal::load(&copy.files()).unwrap();
    assert_eq!(loaded.records.len(), 5);
    assert!(journal::missing_tail(&loaded, true).is_none());

    let (mut lines, _) = journal::lines(&run.files()).unwrap();
    lines.swap(1, 2);
    assert!(journal::check_chain(&lines).is_err());
    assert!(journal::write_copy(&RunDir::new(dest.path()).files(), &lines, false).is_err());
}

#[test]
fn the_journal_writes_where_run_dir_says_and_runs_are_listed_from_there() {
    let runs = tempfile::tempdir().unwrap();
    let run = RunDir::in_runs(runs.path(), "run-1");
    create_run_dir(runs.path(), run.path()).unwrap();
    journal_of(run.path(), 3);
    assert!(run.journal().is_file());
    assert!(run.head().is_file());
    assert!(run.answers().is_dir());
    assert_eq!(run.id(), "run-1");
    let listed = list_runs(runs.path());
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].dir, run.path());
    assert_eq!(resolve(Some(runs.path()), "run").unwrap(), run.path());
    assert_eq!(resolve(Some(runs.path()), "last").unwrap(), run.path());
}

#[test]
fn errors_carry_a_kind_a_front_end_classifies_by() {
    let runs = tempfile::tempdir().unwrap();
    // A name that is not a run id, or no such run: the operator's mistake.
    for id in ["../x", "nope"] {
        let e = resolve(Some(runs.path()), id).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Usage, "{e}");
    }
    // A runs directory others can write to: refused, to protect the runs.
    let open = runs.path().join("open");
    std::fs::create_dir(&open).unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
    }
    let e = create_run_dir(&open, &open.join("r")).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Refused, "{e}");
    assert!(
        e.to_string().contains("is writable by group or others"),
        "{e}"
    );
    // A journal whose chain is broken is refused, not merely unreadable.
    let src = runs.path().join("run-2");
    std::fs::create_dir(&src).unwrap();
    journal_of(&src, 3);
    let journal = RunDir::new(&src).journal();
    let text = std::fs::read_to_string(&journal).unwrap();
    let mut lines: Vec<&str> = text.lines().collect();
    lines.swap(0, 1);
    std::fs::write(&journal, lines.join("\n") + "\n").unwrap();
    let dest = tempfile::tempdir().unwrap();
    let e = copy_run(&src, dest.path()).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Refused, "{e}");
    // Importing a run that is already there: the operator's mistake.
    let store = FileStore {
        runs: runs.path().to_path_buf(),
    };
    let e = store.import(RunDir::in_runs(runs.path(), "run-2").path());
    assert_eq!(e.unwrap_err().kind, ErrorKind::Usage);
}
