//! `IoGetDriverProxyFeatures` (`docs/ddi.md#iogetdriverproxyfeatures`, and
//! `#driver_proxy_feature_flags`): whether DriverProxy can be used by a
//! driver, or by drivers in general; `Enabled` is bit 0, as the library reads it (`probe`,
//! `HotSwap::new`). The system-wide switch is tested in `ddi_system_switch.rs` (a process-wide
//! knob, in a binary of its own); the raw routine in `host/tests/kernel_proxy.rs`.

mod common;

use driver_proxy::{HotSwap, Unavailable, probe};
use driver_proxy_host::HostDriverObject;
use driver_proxy_host::kernel::control::DriverFeatures;

use common::driver;

#[test]
fn a_driver_can_use_driver_proxy_by_default_and_enabled_is_bit_0() {
    let mut storage = HostDriverObject::new();
    let features = probe(Some(driver(&mut storage))).unwrap();
    assert!(features.enabled());
    assert_eq!(
        features.raw(),
        1,
        "Enabled is bit 0; bits 1-31 are reserved (0)"
    );
}

#[test]
fn a_null_driver_object_asks_whether_driver_proxy_is_enabled_for_drivers_in_general() {
    let features = probe(None).unwrap();
    assert!(features.enabled());
    assert_eq!(features.raw(), 1);
}

#[test]
fn a_driver_not_configured_for_driver_proxy_reports_enabled_0_and_falls_back() {
    let mut storage = HostDriverObject::new();
    storage.control().set_features(DriverFeatures::Disabled);
    assert!(!probe(Some(driver(&mut storage))).unwrap().enabled());
    let hotswap = HotSwap::new(driver(&mut storage)).unwrap();
    assert_eq!(hotswap.unavailable(), Some(Unavailable::FeatureDisabled));
    assert!(
        probe(None).unwrap().enabled(),
        "drivers in general are still enabled"
    );
}

#[test]
fn a_driver_excluded_by_policy_reports_enabled_0_and_falls_back() {
    let mut storage = HostDriverObject::new();
    storage.control().set_features(DriverFeatures::Blocked);
    assert!(!probe(Some(driver(&mut storage))).unwrap().enabled());
    // The library reads the features first and falls back without trying to create.
    let hotswap = HotSwap::new(driver(&mut storage)).unwrap();
    assert_eq!(hotswap.unavailable(), Some(Unavailable::FeatureDisabled));
    assert!(storage.control().extension().is_none());
}

#[test]
fn features_are_per_driver_object() {
    let mut enabled = HostDriverObject::new();
    let mut disabled = HostDriverObject::new();
    disabled.control().set_features(DriverFeatures::Disabled);
    assert!(probe(Some(driver(&mut enabled))).unwrap().enabled());
    assert!(!probe(Some(driver(&mut disabled))).unwrap().enabled());
}

#[test]
fn features_are_evaluated_at_every_call() {
    let mut storage = HostDriverObject::new();
    let control = storage.control();
    for (setting, enabled) in [
        (DriverFeatures::Disabled, false),
        (DriverFeatures::Enabled, true),
        (DriverFeatures::Blocked, false),
        (DriverFeatures::Enabled, true),
    ] {
        control.set_features(setting);
        assert_eq!(control.features(), setting);
        assert_eq!(
            probe(Some(driver(&mut storage))).unwrap().enabled(),
            enabled,
            "{setting:?}"
        );
    }
}

#[test]
fn a_deleted_driver_object_forgets_its_features() {
    let mut storage = HostDriverObject::new();
    let control = storage.control();
    control.set_features(DriverFeatures::Disabled);
    assert!(!probe(Some(driver(&mut storage))).unwrap().enabled());
    control.delete();
    assert_eq!(control.features(), DriverFeatures::Enabled);
    let features = probe(Some(driver(&mut storage))).unwrap();
    assert_eq!((features.enabled(), features.raw()), (true, 1));
}
