//! Hugging Face model folders: `config.json` plus the weights, either one `model.safetensors`
//! or shards listed by `model.safetensors.index.json` (`weight_map`: tensor name → shard file).
//! Every shard is mapped once; tensors are zero-copy views.
//!
//! MXFP4 weights (gpt-oss experts) are stored as two U8 tensors, `{name}_blocks`
//! `[.., n_blocks, 16]` (two FP4 codes a byte) and `{name}_scales` `[.., n_blocks]` (E8M0
//! exponents); [`HfFolder::mxfp4`] finds and checks such a pair.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::safetensors::{SafeDtype, SafeTensorView, SafetensorsFile};
use crate::FormatError;

pub const CONFIG_FILE: &str = "config.json";
pub const SINGLE_FILE: &str = "model.safetensors";
pub const INDEX_FILE: &str = "model.safetensors.index.json";
pub const GENERATION_CONFIG_FILE: &str = "generation_config.json";

/// Bytes of one MXFP4 block's codes (32 FP4 values).
pub const MXFP4_BLOCK_BYTES: u64 = 16;
/// Values per MXFP4 block (one scale each).
pub const MXFP4_BLOCK_VALUES: u64 = 32;

/// The name of the codes tensor of the MXFP4 weight `base`.
pub fn mxfp4_blocks_name(base: &str) -> String {
    format!("{base}_blocks")
}

/// The name of the scales tensor of the MXFP4 weight `base`.
pub fn mxfp4_scales_name(base: &str) -> String {
    format!("{base}_scales")
}

/// An MXFP4 weight: `blocks` `[lead.., n_blocks, 16]` U8 and `scales` `[lead.., n_blocks]` U8,
/// shapes checked against each other. Rows of the logical matrix are the leading dims; each
/// row has `n_blocks * 32` values along the contiguous (input) dimension.
#[derive(Clone, Copy, Debug)]
pub struct Mxfp4Tensor<'a> {
    pub blocks: SafeTensorView<'a>,
    pub scales: SafeTensorView<'a>,
}

impl Mxfp4Tensor<'_> {
    /// The logical shape: the leading dims, then `n_blocks * 32`.
    pub fn logical_shape(&self) -> Vec<u64> {
        let mut shape = self.scales.shape.to_vec();
        if let Some(last) = shape.last_mut() {
            *last *= MXFP4_BLOCK_VALUES;
        }
        shape
    }
}

/// A model folder: its config and every tensor of its safetensors files.
#[derive(Debug)]
pub struct HfFolder {
    dir: PathBuf,
    config: Value,
    /// `generation_config.json`, when the folder has one.
    generation_config: Option<Value>,
    shards: Vec<SafetensorsFile>,
    /// Tensor name → index into `shards`.
    tensors: HashMap<String, usize>,
    /// A name the model class uses → the name the file stores it under (see
    /// [`base_model_aliases`]).
    aliases: HashMap<String, String>,
}

fn read_json(path: &Path) -> Result<Value, FormatError> {
    let text = std::fs::read_to_string(path).map_err(|source| FormatError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|source| FormatError::InvalidJson {
        path: path.to_path_buf(),
        source,
    })
}

impl HfFolder {
    /// Reads `config.json` and maps the safetensors files of the folder `dir`. A missing
    /// config, a missing or broken shard, or an index that names a tensor its shard does not
    /// hold is an error naming the file (and tensor).
    pub fn open(dir: impl AsRef<Path>) -> Result<HfFolder, FormatError> {
        let dir = dir.as_ref();
        let config_path = dir.join(CONFIG_FILE);
        if !config_path.is_file() {
            return Err(FormatError::MissingFile {
                path: config_path,
                what: "a Hugging Face model folder needs its config.json".into(),
            });
        }
        let config = read_json(&config_path)?;
        if !config.is_object() {
            return Err(FormatError::BadFolderFile {
                path: config_path,
                reason: "the config is not a JSON object".into(),
            });
        }
        let generation_path = dir.join(GENERATION_CONFIG_FILE);
        let generation_config = if generation_path.is_file() {
            Some(read_json(&generation_path)?)
        } else {
            None
        };
        let index_path = dir.join(INDEX_FILE);
        let single_path = dir.join(SINGLE_FILE);
        let (shards, tensors) = if index_path.is_file() {
            open_sharded(dir, &index_path)?
        } else if single_path.is_file() {
            let file = SafetensorsFile::open(&single_path)?;
            let tensors = file.tensor_names().map(|n| (n.to_string(), 0)).collect();
            (vec![file], tensors)
        } else {
            return Err(FormatError::MissingFile {
                path: single_path,
                what: format!("no {SINGLE_FILE} and no {INDEX_FILE} in the folder"),
            });
        };
        let aliases = base_model_aliases(&tensors);
        Ok(HfFolder {
            dir: dir.to_path_buf(),
            config,
            generation_config,
            shards,
            tensors,
            aliases,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The parsed `config.json`.
    pub fn config(&self) -> &Value {
        &self.config
    }

    /// The parsed `generation_config.json` (EOS ids, sampling defaults), if present.
    pub fn generation_config(&self) -> Option<&Value> {
        self.generation_config.as_ref()
    }

    /// `config.json`'s `model_type` (`llama`, `gpt_oss`, ...).
    pub fn model_type(&self) -> Option<&str> {
        self.config.get("model_type")?.as_str()
    }

    /// The name the file stores tensor `name` under.
    fn stored_name<'a>(&'a self, name: &'a str) -> &'a str {
        self.aliases.get(name).map_or(name, String::as_str)
    }

    /// The tensor called `name`, from whichever shard holds it.
    pub fn tensor(&self, name: &str) -> Option<SafeTensorView<'_>> {
        let name = self.stored_name(name);
        self.shards.get(*self.tensors.get(name)?)?.tensor(name)
    }

    /// The file that holds tensor `name`.
    pub fn tensor_file(&self, name: &str) -> Option<&Path> {
        Some(
            self.shards
                .get(*self.tensors.get(self.stored_name(name))?)?
                .path(),
        )
    }

    /// All tensor names, sorted.
    pub fn tensor_names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.tensors.keys().map(String::as_str).collect();
        names.sort_unstable();
        names
    }

    /// Drops the pages of tensor `name` from memory, in whichever shard holds it (see
    /// [`SafetensorsFile::release_tensor`]).
    pub fn release_tensor(&self, name: &str) {
        let name = self.stored_name(name);
        if let Some(shard) = self.tensors.get(name).and_then(|&i| self.shards.get(i)) {
            shard.release_tensor(name);
        }
    }

    /// The mapped safetensors files.
    pub fn shards(&self) -> &[SafetensorsFile] {
        &self.shards
    }

    /// The MXFP4 weight `base` (`{base}_blocks` + `{base}_scales`): `Ok(None)` when neither
    /// exists, an error when only one does or when their dtypes or shapes disagree.
    pub fn mxfp4(&self, base: &str) -> Result<Option<Mxfp4Tensor<'_>>, FormatError> {
        let blocks_name = mxfp4_blocks_name(base);
        let scales_name = mxfp4_scales_name(base);
        let (blocks, scales) = match (self.tensor(&blocks_name), self.tensor(&scales_name)) {
            (None, None) => return Ok(None),
            (Some(b), Some(s)) => (b, s),
            (Some(_), None) => {
                return Err(self.mxfp4_error(&blocks_name, format!("{scales_name:?} is missing")))
            }
            (None, Some(_)) => {
                return Err(self.mxfp4_error(&scales_name, format!("{blocks_name:?} is missing")))
            }
        };
        for view in [&blocks, &scales] {
            if view.dtype != SafeDtype::U8 {
                let reason = format!("dtype {} where MXFP4 needs U8", view.dtype);
                return Err(self.mxfp4_error(view.name, reason));
            }
        }
        let shapes_fit = blocks.shape.len() >= 2
            && blocks.shape.last() == Some(&MXFP4_BLOCK_BYTES)
            && blocks.shape[..blocks.shape.len() - 1] == *scales.shape;
        if !shapes_fit {
            let reason = format!(
                "blocks shape {:?} and scales shape {:?} are not [.., n_blocks, 16] and \
                 [.., n_blocks]",
                blocks.shape, scales.shape
            );
            return Err(self.mxfp4_error(&blocks_name, reason));
        }
        Ok(Some(Mxfp4Tensor { blocks, scales }))
    }

    fn mxfp4_error(&self, tensor: &str, reason: String) -> FormatError {
        let path = self
            .tensor_file(tensor)
            .map(Path::to_path_buf)
            .unwrap_or_else(|| self.dir.clone());
        FormatError::BadFolderFile {
            path,
            reason: format!("MXFP4 tensor {tensor:?}: {reason}"),
        }
    }
}

/// A folder saved from a base model (transformers' `AutoModel`, as the Qwen3-Embedding files
/// are) names its tensors `embed_tokens.weight`, `layers.0...`, `norm.weight`, where the
/// `...ForCausalLM` class its config names, and every loader here, says `model.embed_tokens.weight`
/// and so on (transformers loads either into either class). When no tensor is under `model.`,
/// each is also known by that name.
fn base_model_aliases(tensors: &HashMap<String, usize>) -> HashMap<String, String> {
    const PREFIX: &str = "model.";
    if tensors.keys().any(|name| name.starts_with(PREFIX)) {
        return HashMap::new();
    }
    tensors
        .keys()
        .map(|name| (format!("{PREFIX}{name}"), name.clone()))
        .collect()
}

type ShardedTensors = (Vec<SafetensorsFile>, HashMap<String, usize>);

fn open_sharded(dir: &Path, index_path: &Path) -> Result<ShardedTensors, FormatError> {
    let index = read_json(index_path)?;
    let bad = |reason: String| FormatError::BadFolderFile {
        path: index_path.to_path_buf(),
        reason,
    };
    let Some(Value::Object(weight_map)) = index.get("weight_map") else {
        return Err(bad("no \"weight_map\" object".into()));
    };
    // Shard file name → the tensors the index puts in it (sorted, for stable errors).
    let mut by_shard: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (tensor, shard) in weight_map {
        let Some(shard) = shard.as_str() else {
            return Err(bad(format!("weight_map[{tensor:?}] is not a file name")));
        };
        // Shards are plain file names next to the index; nothing may point elsewhere.
        let plain = Path::new(shard).file_name().and_then(|n| n.to_str()) == Some(shard);
        if !plain || shard == ".." {
            return Err(bad(format!(
                "weight_map[{tensor:?}] = {shard:?} is not a file name in the folder"
            )));
        }
        by_shard.entry(shard).or_default().push(tensor);
    }
    let mut shards = Vec::with_capacity(by_shard.len());
    let mut tensors = HashMap::with_capacity(weight_map.len());
    for (shard_name, names) in by_shard {
        let shard_path = dir.join(shard_name);
        if !shard_path.is_file() {
            return Err(FormatError::MissingFile {
                path: shard_path,
                what: format!(
                    "{INDEX_FILE} puts {} tensors in it, e.g. {:?}",
                    names.len(),
                    names.first().copied().unwrap_or_default()
                ),
            });
        }
        let file = SafetensorsFile::open(&shard_path)?;
        for name in names {
            if file.info(name).is_none() {
                return Err(FormatError::TensorNotInShard {
                    index: index_path.to_path_buf(),
                    shard: shard_name.to_string(),
                    tensor: name.to_string(),
                });
            }
            tensors.insert(name.to_string(), shards.len());
        }
        shards.push(file);
    }
    Ok((shards, tensors))
}
