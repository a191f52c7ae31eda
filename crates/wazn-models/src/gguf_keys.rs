//! Typed reads of a GGUF file's `{arch}.*` hyper-parameter keys, with errors that
//! name the key.

use wazn_formats::{GgufFile, Metadata};

use crate::error::ModelError;

/// The `{arch}.*` keys of one file.
pub(crate) struct ArchKeys<'a> {
    md: &'a Metadata,
    arch: &'a str,
}

impl<'a> ArchKeys<'a> {
    pub fn new(md: &'a Metadata, arch: &'a str) -> Self {
        ArchKeys { md, arch }
    }

    pub fn key(&self, name: &str) -> String {
        format!("{}.{name}", self.arch)
    }

    pub fn opt_usize(&self, name: &str) -> Result<Option<usize>, ModelError> {
        let key = self.key(name);
        match self.md.get_u64(&key)? {
            None => Ok(None),
            Some(v) => usize::try_from(v)
                .map(Some)
                .map_err(|_| ModelError::BadHyperParameter(format!("{key} = {v}"))),
        }
    }

    pub fn usize(&self, name: &str) -> Result<usize, ModelError> {
        self.opt_usize(name)?.ok_or_else(|| ModelError::MissingKey {
            key: self.key(name),
        })
    }

    pub fn opt_f32(&self, name: &str) -> Result<Option<f32>, ModelError> {
        Ok(self.md.get_f32(&self.key(name))?)
    }

    pub fn f32(&self, name: &str) -> Result<f32, ModelError> {
        self.opt_f32(name)?.ok_or_else(|| ModelError::MissingKey {
            key: self.key(name),
        })
    }

    pub fn opt_bool(&self, name: &str) -> Result<Option<bool>, ModelError> {
        Ok(self.md.get_bool(&self.key(name))?)
    }

    pub fn opt_str(&self, name: &str) -> Result<Option<&'a str>, ModelError> {
        Ok(self.md.get_str(&self.key(name))?)
    }
}

/// The vocabulary size of a GGUF model: the rows of its token embedding.
pub(crate) fn gguf_n_vocab(file: &GgufFile) -> Result<usize, ModelError> {
    let name = "token_embd.weight";
    let info = file
        .tensor(name)
        .ok_or_else(|| ModelError::MissingTensor { name: name.into() })?;
    match info.dims.as_slice() {
        [_, n] => {
            usize::try_from(*n).map_err(|_| ModelError::BadTensor(format!("{name}: {n} rows")))
        }
        dims => Err(ModelError::TensorShape {
            name: name.into(),
            actual: dims.to_vec(),
            expected: vec![0, 0],
        }),
    }
}
