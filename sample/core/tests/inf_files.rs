//! The INF files in `inf/` use the names of `hotswap_sample_core::names` and follow the
//! install rules `inf/README.md` describes (a small INF reader, not a replacement for
//! `infverif`, which only runs on Windows).

use std::collections::BTreeMap;

use hotswap_sample_core::names::{
    DEVICE_INTERFACE_GUID_STR, DEVICE_SDDL, DOS_DEVICE_NAME, HARDWARE_ID, KMDF_IMAGE_NAME,
    KMDF_SERVICE_NAME, WDM_IMAGE_NAME, WDM_SERVICE_NAME, WIN32_DEVICE_PATH,
};

const KMDF_INX: &str = include_str!("../../../inf/hotswap_sample.inx");
const WDM_INF: &str = include_str!("../../../inf/hotswap_sample_wdm.inf");
const README: &str = include_str!("../../../inf/README.md");
const SAMPLE_CLASS_GUID: &str = "{78A1C341-4539-11d3-B88D-00C04FAD5171}";

/// An INF: sections (names lower-cased, as INF names are case-insensitive) holding their
/// lines without comments, in order.
struct Inf {
    sections: BTreeMap<String, Vec<String>>,
    strings: BTreeMap<String, String>,
}

impl Inf {
    fn parse(text: &str) -> Self {
        let mut sections: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut current = None;
        for raw in text.lines() {
            let line = strip_comment(raw).trim();
            if line.is_empty() {
                continue;
            }
            if let Some(name) = line
                .strip_prefix('[')
                .and_then(|rest| rest.strip_suffix(']'))
            {
                let name = name.trim().to_ascii_lowercase();
                assert!(
                    !sections.contains_key(&name),
                    "section [{name}] appears twice"
                );
                sections.insert(name.clone(), Vec::new());
                current = Some(name);
                continue;
            }
            let section = current
                .as_ref()
                .unwrap_or_else(|| panic!("line outside a section: {line}"));
            sections.get_mut(section).unwrap().push(line.to_owned());
        }
        let strings = sections
            .get("strings")
            .map(|lines| {
                lines
                    .iter()
                    .map(|line| {
                        let (key, value) = line.split_once('=').unwrap();
                        (
                            key.trim().to_ascii_lowercase(),
                            value.trim().trim_matches('"').to_owned(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        Self { sections, strings }
    }

    fn section(&self, name: &str) -> &[String] {
        self.sections
            .get(&name.to_ascii_lowercase())
            .unwrap_or_else(|| panic!("no section [{name}]"))
    }

    fn has_section(&self, name: &str) -> bool {
        self.sections.contains_key(&name.to_ascii_lowercase())
    }

    /// The values of `key = value` lines of a section (keys case-insensitive).
    fn values(&self, section: &str, key: &str) -> Vec<String> {
        self.section(section)
            .iter()
            .filter_map(|line| line.split_once('='))
            .filter(|(k, _)| k.trim().eq_ignore_ascii_case(key))
            .map(|(_, v)| v.trim().to_owned())
            .collect()
    }

    fn value(&self, section: &str, key: &str) -> String {
        match self.values(section, key).as_slice() {
            [one] => one.clone(),
            other => panic!("[{section}] {key}: expected one value, found {other:?}"),
        }
    }

    /// Every `%token%` used outside `[Strings]` is defined there (`%13%`-style DIRIDs aside).
    fn check_strings(&self) {
        for (name, lines) in &self.sections {
            if name == "strings" {
                continue;
            }
            for line in lines {
                for (i, token) in line.split('%').enumerate() {
                    if i % 2 == 1 && !token.chars().all(|c| c.is_ascii_digit()) {
                        let key = token.to_ascii_lowercase();
                        assert!(
                            self.strings.contains_key(&key),
                            "%{token}% in [{name}] is not in [Strings]"
                        );
                    }
                }
            }
        }
    }
}

fn strip_comment(line: &str) -> &str {
    let mut quoted = false;
    for (i, c) in line.char_indices() {
        match c {
            '"' => quoted = !quoted,
            ';' if !quoted => return &line[..i],
            _ => {}
        }
    }
    line
}

/// `AddService = name, flags, section` → (name, flags, section).
fn add_service(value: &str) -> (String, String, String) {
    let parts: Vec<String> = value
        .split(',')
        .map(|part| part.trim().to_owned())
        .collect();
    assert_eq!(parts.len(), 3, "AddService = {value}");
    (parts[0].clone(), parts[1].clone(), parts[2].clone())
}

fn check_service(inf: &Inf, section: &str, image: &str) {
    assert_eq!(inf.value(section, "ServiceType"), "1", "kernel driver");
    assert_eq!(inf.value(section, "StartType"), "3", "demand start");
    assert_eq!(inf.value(section, "ErrorControl"), "1");
    assert_eq!(
        inf.value(section, "ServiceBinary"),
        format!("%13%\\{image}"),
        "runs from the driver store"
    );
}

fn check_version(inf: &Inf) {
    assert_eq!(inf.value("Version", "Signature"), "\"$WINDOWS NT$\"");
    assert_eq!(inf.value("Version", "Class"), "Sample");
    assert_eq!(inf.value("Version", "ClassGuid"), SAMPLE_CLASS_GUID);
    assert_eq!(inf.value("Version", "PnpLockDown"), "1");
    assert!(inf.value("Version", "Provider").starts_with('%'));
    assert_eq!(inf.value("DestinationDirs", "DefaultDestDir"), "13");
}

#[test]
fn kmdf_inx_installs_a_root_enumerated_sample_device() {
    let inf = Inf::parse(KMDF_INX);
    check_version(&inf);
    inf.check_strings();
    assert!(
        inf.values("Version", "DriverVer").is_empty(),
        "stampinf writes DriverVer"
    );
    assert!(
        inf.section("SourceDisksFiles")
            .iter()
            .any(|line| line.starts_with(KMDF_IMAGE_NAME))
    );

    let [manufacturer] = inf.section("Manufacturer") else {
        panic!("one manufacturer")
    };
    let (_, models) = manufacturer.split_once('=').unwrap();
    let (models_section, target) = models.split_once(',').unwrap();
    assert_eq!(target.trim(), "NT$ARCH$.10.0...16299");
    let models_section = format!("{}.{}", models_section.trim(), target.trim());
    let model = inf.section(&models_section);
    assert_eq!(model.len(), 1);
    let (_, install) = model[0].split_once('=').unwrap();
    let (install, hardware_id) = install.split_once(',').unwrap();
    assert_eq!(hardware_id.trim(), HARDWARE_ID);

    let install = format!("{}.NT$ARCH$", install.trim());
    let copy = inf.value(&install, "CopyFiles");
    assert_eq!(inf.section(&copy), [KMDF_IMAGE_NAME]);
    let (service, flags, service_section) =
        add_service(&inf.value(&format!("{install}.Services"), "AddService"));
    assert_eq!(service, KMDF_SERVICE_NAME);
    assert_eq!(
        inf.strings[&flags.trim_matches('%').to_ascii_lowercase()],
        "0x00000002",
        "SPSVCINST_ASSOCSERVICE"
    );
    check_service(&inf, &service_section, KMDF_IMAGE_NAME);

    // The device's security, for every device object of the node's stack: the SDDL of the
    // names, and FILE_DEVICE_SECURE_OPEN (0x100, a REG_DWORD: FLG_ADDREG_TYPE_DWORD).
    let security = inf.value(&format!("{install}.HW"), "AddReg");
    assert_eq!(
        inf.section(&security),
        [
            format!("HKR,,Security,,\"{DEVICE_SDDL}\""),
            "HKR,,DeviceCharacteristics,0x10001,0x100".to_owned()
        ]
    );

    let kmdf = inf.value(&format!("{install}.Wdf"), "KmdfService");
    let (kmdf_service, wdf_section) = kmdf.split_once(',').unwrap();
    assert_eq!(kmdf_service.trim(), KMDF_SERVICE_NAME);
    assert_eq!(
        inf.value(wdf_section.trim(), "KmdfLibraryVersion"),
        "$KMDFVERSION$"
    );
}

#[test]
fn wdm_inf_is_a_primitive_driver_with_a_legacy_service() {
    let inf = Inf::parse(WDM_INF);
    check_version(&inf);
    inf.check_strings();
    let driver_ver = inf.value("Version", "DriverVer");
    let (date, version) = driver_ver.split_once(',').unwrap();
    assert_eq!(
        date.split('/').count(),
        3,
        "DriverVer date mm/dd/yyyy: {date}"
    );
    assert_eq!(
        version.split('.').count(),
        4,
        "DriverVer version w.x.y.z: {version}"
    );
    assert!(
        inf.section("SourceDisksFiles")
            .iter()
            .any(|line| line.starts_with(WDM_IMAGE_NAME))
    );

    assert!(
        !inf.has_section("Manufacturer"),
        "a primitive driver has no [Manufacturer]"
    );
    assert!(
        !inf.has_section("DefaultInstall"),
        "[DefaultInstall] must be decorated"
    );
    assert!(
        !inf.sections
            .keys()
            .any(|name| name.starts_with("defaultuninstall"))
    );
    for arch in ["NTamd64", "NTarm64"] {
        let install = format!("DefaultInstall.{arch}");
        assert_eq!(
            inf.section(&inf.value(&install, "CopyFiles")),
            [WDM_IMAGE_NAME]
        );
        let (service, flags, section) =
            add_service(&inf.value(&format!("{install}.Services"), "AddService"));
        assert_eq!(service, WDM_SERVICE_NAME);
        assert_eq!(flags, "0", "no device to associate the service with");
        check_service(&inf, &section, WDM_IMAGE_NAME);
    }
    assert!(
        !WDM_INF.contains(KMDF_IMAGE_NAME),
        "the WDM INF must not install the KMDF image"
    );
}

#[test]
fn the_install_notes_name_what_the_driver_and_the_client_use() {
    // What the KMDF device registers, which the README tells the reader to look for.
    for name in [
        DEVICE_INTERFACE_GUID_STR,
        HARDWARE_ID,
        DOS_DEVICE_NAME,
        WIN32_DEVICE_PATH,
        KMDF_SERVICE_NAME,
        WDM_SERVICE_NAME,
    ] {
        assert!(
            README.contains(name),
            "inf/README.md does not mention {name}"
        );
    }
    assert!(KMDF_INX.contains(DEVICE_INTERFACE_GUID_STR));
    // One devcon flow: the command the README gives is the one the INX names.
    let install = format!("devcon install hotswap_sample.inf {HARDWARE_ID}");
    assert!(README.contains(&install) && KMDF_INX.contains(&install));
    assert!(README.contains(&format!("devcon remove {HARDWARE_ID}")));
    // The KMDF build is a PnP function driver now: nothing says otherwise.
    for stale in [
        "WdfDriverInitNonPnpDriver",
        "control device",
        "non-PnP KMDF",
    ] {
        assert!(
            !README.contains(stale),
            "inf/README.md still says {stale:?}"
        );
        assert!(!KMDF_INX.contains(stale), "the INX still says {stale:?}");
    }
}
