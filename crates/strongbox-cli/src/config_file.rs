//! Settings from a TOML file (`strongbox server --config FILE`, `strongbox agent run --config
//! FILE`) and from `*_FILE` environment variables, merged into the command line before clap
//! parses it, so there is one definition of every setting (the clap flag) and one precedence:
//! flags over environment variables over the file over defaults.
//!
//! A file key is a flag's long name (`max-connections`, or `max_connections`); an unknown key is
//! an error, so a typo is not silently ignored. `STRONGBOX_X_FILE=PATH` gives `STRONGBOX_X` the
//! contents of PATH (container and systemd credentials), unless `STRONGBOX_X` itself is set.

use anyhow::Context as _;
use clap::{ArgAction, Command};
use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// The subcommands that take `--config`, by their path of names.
const CONFIGURABLE: &[&[&str]] = &[&["server"], &["agent", "run"]];

/// `args` (argv, program name first) with the settings of the config file and of `*_FILE`
/// variables added for the flags the command line and environment leave unset.
pub fn expand(cli: &Command, args: Vec<OsString>) -> anyhow::Result<Vec<OsString>> {
    let Some((path, at)) = CONFIGURABLE
        .iter()
        .find_map(|p| subcommand_at(&args, p).map(|i| (*p, i)))
    else {
        return Ok(args);
    };
    let mut cmd = cli.clone();
    for name in path {
        cmd = cmd
            .find_subcommand(name)
            .cloned()
            .context("subcommand definition")?;
    }
    let given: Vec<String> = args[at..]
        .iter()
        .filter_map(|a| a.to_str())
        .filter_map(|a| a.strip_prefix("--"))
        .map(|a| a.split('=').next().unwrap_or(a).to_string())
        .collect();
    let unset = |arg: &clap::Arg| {
        let long = arg.get_long().unwrap_or_default();
        !given.iter().any(|g| g == long)
            && arg.get_env().is_none_or(|e| std::env::var_os(e).is_none())
    };
    let mut extra: Vec<OsString> = Vec::new();
    // `*_FILE` variables first: they are the environment, which the file yields to.
    let mut from_env_files: Vec<&str> = Vec::new();
    for arg in cmd.get_arguments() {
        let (Some(long), Some(env)) = (arg.get_long(), arg.get_env()) else {
            continue;
        };
        let mut var = env.to_os_string();
        var.push("_FILE");
        let Some(from) = std::env::var_os(&var) else {
            continue;
        };
        if unset(arg) {
            let text = std::fs::read_to_string(&from).with_context(|| {
                format!(
                    "reading {} (from {})",
                    Path::new(&from).display(),
                    var.to_string_lossy()
                )
            })?;
            extra.push(format!("--{long}={}", text.trim_end_matches(['\n', '\r'])).into());
            from_env_files.push(long);
        }
    }

    let config_arg = cmd
        .get_arguments()
        .find(|a| a.get_long() == Some("config"))
        .context("--config definition")?;
    if let Some(file) = config_path(&args[at..], config_arg) {
        let text = std::fs::read_to_string(&file)
            .with_context(|| format!("reading the config file {}", file.display()))?;
        let table: toml::Table = text
            .parse()
            .with_context(|| format!("the config file {} is not valid TOML", file.display()))?;
        for (key, value) in &table {
            let long = key.replace('_', "-");
            let arg = cmd
                .get_arguments()
                .find(|a| a.get_long() == Some(long.as_str()) && long != "config")
                .with_context(|| {
                    format!("{}: unknown setting '{key}' (settings are named as the flags of `strongbox {}`)", file.display(), path.join(" "))
                })?;
            if unset(arg) && !from_env_files.contains(&long.as_str()) {
                extra.extend(flag_values(&file, &long, arg, value)?);
            }
        }
    }
    let mut out = args[..at].to_vec();
    out.extend(extra);
    out.extend_from_slice(&args[at..]);
    Ok(out)
}

/// Where the subcommand's own arguments begin, if `args` invokes `path`.
fn subcommand_at(args: &[OsString], path: &[&str]) -> Option<usize> {
    let mut i = args
        .iter()
        .skip(1)
        .position(|a| !a.to_str().is_some_and(|a| a.starts_with('-')))?
        + 1;
    for name in path {
        if args.get(i)?.to_str()? != *name {
            return None;
        }
        i += 1;
    }
    Some(i)
}

/// `--config PATH`, `--config=PATH` or the variable behind it.
fn config_path(args: &[OsString], arg: &clap::Arg) -> Option<PathBuf> {
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let a = a.to_str()?;
        if a == "--config" {
            return it.next().map(PathBuf::from);
        }
        if let Some(p) = a.strip_prefix("--config=") {
            return Some(p.into());
        }
    }
    arg.get_env().and_then(std::env::var_os).map(PathBuf::from)
}

/// The command-line form of one setting.
fn flag_values(
    file: &Path,
    long: &str,
    arg: &clap::Arg,
    value: &toml::Value,
) -> anyhow::Result<Vec<OsString>> {
    let wrong = || anyhow::anyhow!("{}: '{long}' has a value of the wrong kind", file.display());
    let scalar = |v: &toml::Value| match v {
        toml::Value::String(s) => Ok(s.clone()),
        toml::Value::Integer(i) => Ok(i.to_string()),
        toml::Value::Float(f) => Ok(f.to_string()),
        _ => Err(wrong()),
    };
    Ok(match (arg.get_action(), value) {
        (ArgAction::SetTrue, toml::Value::Boolean(true)) => vec![format!("--{long}").into()],
        (ArgAction::SetTrue, toml::Value::Boolean(false)) => Vec::new(),
        (ArgAction::SetTrue, _) => return Err(wrong()),
        (_, toml::Value::Array(items)) => items
            .iter()
            .map(|v| scalar(v).map(|s| format!("--{long}={s}").into()))
            .collect::<anyhow::Result<_>>()?,
        (_, v) => vec![format!("--{long}={}", scalar(v)?).into()],
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory as _, Parser as _};

    fn expanded(args: &[&str]) -> Vec<String> {
        let args = args.iter().map(OsString::from).collect();
        expand(&crate::Cli::command(), args)
            .unwrap()
            .into_iter()
            .map(|a| a.into_string().unwrap())
            .collect()
    }

    #[test]
    fn the_agent_reads_its_file_and_its_flags_win() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("agent.toml");
        std::fs::write(
            &file,
            "data-dir = \"/var/lib/strongbox-agent\"\nport = 9000\nno-change-feed = true\nsecrets-gid = 0\n",
        )
        .unwrap();
        let f = file.to_str().unwrap();
        let args = expanded(&["strongbox", "agent", "run", "--config", f, "--port", "8471"]);
        assert_eq!(
            args,
            [
                "strongbox",
                "agent",
                "run",
                "--data-dir=/var/lib/strongbox-agent",
                "--no-change-feed",
                "--secrets-gid=0",
                "--config",
                f,
                "--port",
                "8471"
            ]
        );
        // And clap takes the result.
        assert!(crate::Cli::try_parse_from(args).is_ok());
    }

    #[test]
    fn other_commands_are_left_alone() {
        let args = ["strongbox", "secret", "list", "--vault", "dev"];
        assert_eq!(expanded(&args), args);
    }
}
