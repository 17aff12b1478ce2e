//! WDM kernel services for driver images (being written).
