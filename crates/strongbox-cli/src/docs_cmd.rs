//! `strongbox completions SHELL` and `strongbox man --dir DIR`: generated from the CLI
//! definition itself (clap_complete, clap_mangen), so they never drift from the commands.

use std::path::Path;
use std::process::ExitCode;

pub fn completions(mut cmd: clap::Command, shell: clap_complete::Shell) -> ExitCode {
    clap_complete::generate(shell, &mut cmd, "strongbox", &mut std::io::stdout());
    ExitCode::SUCCESS
}

/// One page per command (`strongbox.1`, `strongbox-admin-backup.1`, …), hidden ones left out.
pub fn man(cmd: clap::Command, dir: &Path) -> anyhow::Result<ExitCode> {
    use anyhow::Context as _;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    clap_mangen::generate_to(cmd, dir)
        .with_context(|| format!("writing man pages to {}", dir.display()))?;
    Ok(ExitCode::SUCCESS)
}
