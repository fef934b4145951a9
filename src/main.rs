//! The `runbook` binary: everything lives in the library; see `runbook::main` (the `cli` module).

fn main() -> std::process::ExitCode {
    runbook::main()
}
