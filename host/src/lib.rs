//! Host kernel (placeholder; built in issue 3).
