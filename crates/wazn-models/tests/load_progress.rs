//! A load tells its observer the bytes of the model's tensors, then reports them as it
//! reads them, so that a bar drawn from it starts at zero and ends full.

mod common;

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use wazn_formats::GgufFile;
use wazn_kernels::Activations;
use wazn_models::{load_model, observe_load, LoadProgress, ModelOptions};

/// Every call, in order: `Some(total)` for `begin`, `None` for a start that never came.
#[derive(Default)]
struct Record {
    total: RefCell<Option<u64>>,
    steps: RefCell<Vec<u64>>,
}

impl LoadProgress for Record {
    fn begin(&self, total_bytes: u64) {
        assert!(self.total.borrow().is_none(), "begun twice");
        *self.total.borrow_mut() = Some(total_bytes);
    }

    fn advance(&self, bytes: u64) {
        assert!(self.total.borrow().is_some(), "progress before the start");
        self.steps.borrow_mut().push(bytes);
    }
}

#[test]
fn loading_the_default_model_reports_every_byte_of_its_tensors() {
    let file = Arc::new(GgufFile::open(common::default_model_path()).expect("open"));
    let tensor_bytes: u64 = file.tensors().iter().map(|t| t.n_bytes).sum();
    let record = Rc::new(Record::default());
    let options = ModelOptions {
        activations: Activations::Quantized,
    };
    observe_load(record.clone(), || load_model(Arc::clone(&file), &options)).expect("load");
    assert_eq!(*record.total.borrow(), Some(tensor_bytes));
    let steps = record.steps.borrow();
    // One step per tensor read: all of them, each once.
    assert_eq!(steps.len(), file.tensors().len());
    assert_eq!(steps.iter().sum::<u64>(), tensor_bytes);
}
