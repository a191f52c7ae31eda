//! A Hugging Face folder's `config.json`, the sizes of everything the model allocates.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use wazn_kernels::ThreadPool;
use wazn_models::{load_model_from, Batch, ModelOptions, ModelSource};

/// The tiny checkpoints of wazn-models' tests whose weights the fuzzed configurations meet:
/// one per architecture wazn reads from a folder.
const CHECKPOINTS: [&str; 7] = [
    "llama_hf",
    "qwen3",
    "qwen3moe",
    "gptoss",
    "gemma3",
    "deepseek3",
    "kimi_k2",
];

/// Loads a folder whose `config.json` is arbitrary: the first byte picks the checkpoint whose
/// `model.safetensors` is beside it, the rest is the configuration. A configuration the weights
/// do not fit must be an error, not a panic, an abort or an allocation it sizes; one that loads
/// must run a forward pass, whose logits are rows of the vocabulary's width.
pub fn hf_config(data: &[u8]) {
    let Some((&pick, config)) = data.split_first() else {
        return;
    };
    let folder = &folders()[usize::from(pick) % CHECKPOINTS.len()];
    std::fs::write(folder.join("config.json"), config).expect("write config.json");
    let Ok(source) = ModelSource::open(folder) else {
        return;
    };
    let Ok(model) = load_model_from(&source, &ModelOptions::default()) else {
        return;
    };
    let info = model.info();
    assert!(info.n_vocab > 0 && info.n_layer > 0);
    let tokens = [0, (info.n_vocab - 1) as u32];
    let mut batch = Batch::new();
    batch.push_tokens(0, 0, &tokens, true);
    let mut kv = model.new_kv_cache(8);
    if let Ok(logits) = model.forward(&batch, &mut kv, pool()) {
        assert_eq!(logits.n_vocab, info.n_vocab);
        assert_eq!(logits.data.len(), tokens.len() * info.n_vocab);
    }
}

/// This process's folders, one per checkpoint, each holding a copy of its weights.
fn folders() -> &'static [PathBuf] {
    static FOLDERS: OnceLock<Vec<PathBuf>> = OnceLock::new();
    FOLDERS.get_or_init(|| {
        let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("../wazn-models/tests/data");
        let root = std::env::temp_dir().join(format!("wazn-fuzz-hf-{}", std::process::id()));
        CHECKPOINTS
            .iter()
            .map(|name| {
                let folder = root.join(name);
                std::fs::create_dir_all(&folder).expect("a temp folder");
                let weights = data.join(name).join("hf/model.safetensors");
                std::fs::copy(&weights, folder.join("model.safetensors"))
                    .unwrap_or_else(|e| panic!("copy {}: {e}", weights.display()));
                folder
            })
            .collect()
    })
}

fn pool() -> &'static ThreadPool {
    static POOL: OnceLock<ThreadPool> = OnceLock::new();
    POOL.get_or_init(|| ThreadPool::new(1).expect("a thread pool"))
}
