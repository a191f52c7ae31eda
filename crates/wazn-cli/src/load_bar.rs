//! Loading a model with a progress bar on stderr while its weights are read and repacked
//! (seconds for an 8B model), drawn only when stderr is a terminal, as the bars of
//! `quantize` and `perplexity`: a log or a pipe gets the same lines as before.

use std::io::IsTerminal;
use std::path::Path;
use std::rc::Rc;
use std::time::Duration;

use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use wazn_engine::{Engine, EngineError, EngineOptions};
use wazn_models::{observe_load, LoadProgress};

/// Loads the model at `path`, drawing the bar meanwhile where stderr is a terminal.
pub fn load_engine(path: &Path, options: EngineOptions) -> Result<Engine> {
    let loaded = if std::io::stderr().is_terminal() {
        load_with_bar(path, options)
    } else {
        Engine::load(path, options)
    };
    loaded.with_context(|| format!("cannot load {}", path.display()))
}

fn load_with_bar(path: &Path, options: EngineOptions) -> Result<Engine, EngineError> {
    // No bar until the size is known: a bar of length 0 would be drawn full.
    let bar = ProgressBar::new(0).with_style(style("{elapsed_precise} {wide_msg}"));
    let name = path.file_name().unwrap_or(path.as_os_str());
    bar.set_message(format!("loading {}", name.to_string_lossy()));
    bar.enable_steady_tick(Duration::from_millis(200));
    let loaded = observe_load(Rc::new(BarProgress(bar.clone())), || {
        Engine::load(path, options)
    });
    // Cleared before anything else is printed, so an error is the only line left.
    bar.finish_and_clear();
    loaded
}

struct BarProgress(ProgressBar);

impl LoadProgress for BarProgress {
    fn begin(&self, total_bytes: u64) {
        self.0.set_length(total_bytes);
        self.0.set_position(0);
        self.0.set_style(style(
            "{elapsed_precise} [{bar:24}] {bytes}/{total_bytes} {wide_msg}",
        ));
    }

    fn advance(&self, bytes: u64) {
        self.0.inc(bytes);
    }
}

fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ")
}
