//! PE image loader (being written).
