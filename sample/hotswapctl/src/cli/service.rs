//! `hotswapctl service NAME stop|start|set-image PATH|query`: the driver's kernel service
//! through the Service Control Manager ([`crate::service`], Windows and Wine).

use super::ServiceAction;

/// `service`: one action through the Service Control Manager.
#[cfg(windows)]
pub(super) fn execute(name: &str, action: &ServiceAction, timeout: u64) -> Result<(), String> {
    let service = crate::service::Service::new(name);
    let timeout = std::time::Duration::from_secs(timeout);
    let (what, result) = match action {
        ServiceAction::Stop => ("stopping", service.stop(timeout)),
        ServiceAction::Start => ("starting", service.start(timeout)),
        ServiceAction::SetImage { path } => ("re-pointing", service.set_image(path)),
        ServiceAction::Query => (
            "querying",
            service
                .state()
                .map(|state| println!("{name}: state {state}")),
        ),
    };
    result.map_err(|error| format!("{what} service {name}: {error}"))
}

/// `service` where there is no Service Control Manager.
#[cfg(not(windows))]
pub(super) fn execute(_: &str, _: &ServiceAction, _: u64) -> Result<(), String> {
    Err("the service command needs Windows (or Wine)".to_owned())
}
