//! The kernel link arguments (`/DRIVER /SUBSYSTEM:NATIVE,10.0 /ENTRY:DriverEntry
//! /NODEFAULTLIB /RELEASE /TSAWARE:NO`), for the Windows MSVC targets only: a build for the
//! Linux host (the tests) links as usual.

fn main() {
    driver_proxy_build::emit_link_args();
}
