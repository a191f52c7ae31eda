//! `wazn tokenize`: token ids of a text, as llama.cpp's tokenize tool prints them.

use std::io::Write;

use anyhow::Result;
use clap::Args;

use crate::model_path;

#[derive(Args, Debug)]
pub struct TokenizeArgs {
    /// The text to tokenize.
    pub text: String,
    /// GGUF model file or Hugging Face model folder (default: the default model).
    #[arg(short = 'm', long = "model")]
    pub model: Option<std::path::PathBuf>,
    /// Parse special-token strings in the text (e.g. "<|im_start|>") as special tokens.
    #[arg(long)]
    pub special: bool,
    /// Do not add the BOS / EOS tokens the model asks for.
    #[arg(long = "no-bos")]
    pub no_bos: bool,
}

pub fn tokenize(args: TokenizeArgs) -> Result<()> {
    let path = model_path::resolve(args.model)?;
    let text = if path.is_dir() {
        wazn_text::ModelText::from_hf_folder(&path)?
    } else {
        let file = wazn_formats::GgufFile::open(&path)?;
        wazn_text::ModelText::from_gguf_metadata(file.metadata())?
    };
    let tokenizer = text.tokenizer;
    let ids = tokenizer.encode(&args.text, !args.no_bos, args.special)?;
    writeln!(std::io::stdout().lock(), "{}", serde_json::to_string(&ids)?)?;
    Ok(())
}
