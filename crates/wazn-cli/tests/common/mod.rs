//! Running the `wazn` binary from tests, and what a failure must look like.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Command;

/// Runs `wazn args` with an empty model cache (the default model is named by path where a
/// test needs it); returns the exit code, stdout and stderr.
pub fn wazn(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_wazn"))
        .args(args)
        .env("WAZN_CACHE_DIR", scratch_dir("empty-cache"))
        .output()
        .expect("run wazn");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A folder for one test file's scratch files.
pub fn scratch_dir(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs `wazn args`, expects failure with one `error:` line containing `needle`.
pub fn assert_fails_with(args: &[&str], needle: &str) {
    let (code, _, stderr) = wazn(args);
    assert_ne!(code, 0, "{args:?} should fail; stderr: {stderr}");
    assert!(!stderr.contains("panicked"), "{args:?} panicked: {stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(
        lines.len(),
        1,
        "{args:?}: expected one line, got {stderr:?}"
    );
    assert!(lines[0].starts_with("error: "), "{args:?}: {stderr}");
    assert!(
        lines[0].to_lowercase().contains(&needle.to_lowercase()),
        "{args:?}: expected {needle:?} in {stderr:?}"
    );
}

/// The default model, where the cache holds it.
pub fn default_model() -> Option<PathBuf> {
    wazn_formats::model_cache::default_model_path().filter(|path| path.is_file())
}
