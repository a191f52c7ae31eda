//! AVX2 kernels for packed Q4_K, Q5_K and Q6_K weights against Q8_K activations.

use super::PackedFn;
use crate::dtype::DType;

/// This module's kernel for packed weights of `dtype`.
pub(super) fn kernel(_dtype: DType) -> Option<PackedFn> {
    None
}
