//! `strongbox server --config FILE`: settings named as the flags, environment variables over
//! the file, flags over both, `STRONGBOX_X_FILE` for `STRONGBOX_X`, unknown keys refused.

use crate::common::*;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Starts the server with `args` and `env`; returns the metrics address it reports serving on
/// (the settings under test all steer it) and the process.
fn start(dir: &Path, args: &[&str], env: &[(&str, String)]) -> (Kill, u16) {
    let port = free_port();
    let log = dir.join(format!("server-{port}.log"));
    let mut cmd = Command::new(BIN);
    cmd.args(["server", "--dev", "--listen", &format!("127.0.0.1:{port}")])
        .args(args)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let child = Kill(cmd.spawn().unwrap());
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if let Some(line) = text.lines().find(|l| l.contains("metrics listening")) {
            let at = line
                .split("bound=")
                .nth(1)
                .unwrap()
                .split_whitespace()
                .next()
                .unwrap();
            return (child, at.rsplit(':').next().unwrap().parse().unwrap());
        }
        assert!(Instant::now() < deadline, "no metrics listener: {text}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn flags_override_the_environment_which_overrides_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let [from_file, from_env, from_flag, from_var_file] = [0; 4].map(|_| free_port());
    let config = dir.path().join("strongbox.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = {:?}\nmetrics-listen = \"127.0.0.1:{from_file}\"\nmax-connections = 64\n",
            data.to_str().unwrap()
        ),
    )
    .unwrap();
    let c = config.to_str().unwrap();

    let (_s, at) = start(dir.path(), &["--config", c], &[]);
    assert_eq!(at, from_file, "the file's setting");
    drop(_s);

    let env = [("STRONGBOX_METRICS_LISTEN", format!("127.0.0.1:{from_env}"))];
    let (_s, at) = start(dir.path(), &["--config", c], &env);
    assert_eq!(at, from_env, "the environment over the file");
    drop(_s);

    let flag = format!("127.0.0.1:{from_flag}");
    let (_s, at) = start(
        dir.path(),
        &["--config", c, "--metrics-listen", &flag],
        &env,
    );
    assert_eq!(at, from_flag, "the flag over both");
    drop(_s);

    // STRONGBOX_X_FILE: the value from a file (container and systemd credentials); the config
    // file found through STRONGBOX_CONFIG.
    let value = dir.path().join("metrics-listen");
    std::fs::write(&value, format!("127.0.0.1:{from_var_file}\n")).unwrap();
    let env = [
        (
            "STRONGBOX_METRICS_LISTEN_FILE",
            value.to_str().unwrap().to_string(),
        ),
        ("STRONGBOX_CONFIG", c.to_string()),
    ];
    let (_s, at) = start(dir.path(), &[], &env);
    assert_eq!(
        at, from_var_file,
        "STRONGBOX_METRICS_LISTEN_FILE over the file"
    );
    // The data dir came from the file.
    assert!(data.join("dev-credentials.json").exists());
}

#[test]
fn an_unknown_or_mistyped_setting_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("strongbox.toml");
    for (text, says) in [
        ("max-conections = 5\n", "unknown setting 'max-conections'"),
        ("max-connections = true\n", "wrong kind"),
        ("listen = [\n", "not valid TOML"),
    ] {
        std::fs::write(&config, text).unwrap();
        let (code, _, err) = cli(&["server", "--config", config.to_str().unwrap()]);
        assert_ne!(code, 0, "{text}");
        assert!(err.contains(says), "{text}: {err}");
    }
}
