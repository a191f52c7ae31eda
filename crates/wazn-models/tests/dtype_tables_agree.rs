//! The file layer's type table (sizes, to find tensors in a file) and the kernel
//! layer's (sizes, to compute with them) are kept apart by the layering; they must
//! agree on every type both know.

use wazn_formats::GgmlType;
use wazn_kernels::DType;

#[test]
fn block_and_type_sizes_agree() {
    for dtype in DType::ALL {
        let ggml = GgmlType::from_id(dtype.ggml_id())
            .unwrap_or_else(|| panic!("{dtype:?} has no ggml type {}", dtype.ggml_id()));
        assert_eq!(
            ggml.block_size(),
            dtype.block_size() as u64,
            "{dtype:?} block size"
        );
        assert_eq!(
            ggml.type_size(),
            dtype.type_size() as u64,
            "{dtype:?} bytes per block"
        );
        assert_eq!(ggml.name(), dtype.name(), "{dtype:?} name");
    }
}
