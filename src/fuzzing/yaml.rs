//! The operator's files: playbooks (YAML, or JSON read as YAML) and inventories (YAML files,
//! and the JSON device bodies of the API).

use std::collections::HashSet;
use std::sync::LazyLock;

use crate::inventory::{Device, DeviceInput, DeviceSpec, Facts};
use crate::playbook::{Window, plan};
use crate::yaml::YamlError;

pub(super) const TOKENS: &[&[u8]] = &[
    b": ",
    b"- ",
    b"\n  ",
    b"\n    - ",
    b"&a ",
    b"*a",
    b"<<: *a",
    b"{",
    b"}",
    b"[",
    b"]",
    b"\"",
    b"'",
    b"|\n",
    b">-\n",
    b"!!str ",
    b"~",
    b"null",
    b"true",
    b"---\n",
    b"...\n",
    b"#",
    b"%",
    b"name",
    b"host",
    b"platform",
    b"devices",
    b"groups",
    b"defaults",
    b"targets",
    b"image",
    b"strategy",
    b"waves",
    b"windows",
    b"Mon-Fri 01:00-05:00 Europe/Berlin",
    b"ios",
    b"nxos",
    b"iosxe",
    b"password",
    b"password_env",
    b"25%",
    b"\xef\xbb\xbf",
    b"\t",
    b"\r\n",
];

/// A parse error points into the text: a non-empty message that does not repeat the position,
/// and a line and column that exist in the document (both 0 only for whole-document problems).
fn check_located(text: &str, e: &YamlError) {
    assert!(
        !e.message.trim().is_empty(),
        "parse error without a message"
    );
    assert!(!e.to_string().is_empty());
    if e.line == 0 || e.column == 0 {
        assert_eq!((e.line, e.column), (0, 0), "half a location: {e}");
        return;
    }
    // YAML breaks lines at CR LF, LF and a lone CR.
    let text = text.replace("\r\n", "\n").replace('\r', "\n");
    let lines: Vec<&str> = text.split('\n').collect();
    assert!(
        e.line as usize <= lines.len() + 1,
        "error at line {} of a {}-line document: {e}",
        e.line,
        lines.len()
    );
    if let Some(line) = lines.get(e.line as usize - 1) {
        let width = line.chars().count() + 2;
        assert!(
            e.column as usize <= width,
            "error at column {} of a {}-character line: {e}",
            e.column,
            width - 2
        );
    }
}

/// The fleet every parsed playbook is planned against: one device per platform, with groups,
/// tags, sites and models for the selectors to match.
const FLEET_YAML: &str = "
defaults: {platform: ios, username: netops, password_env: FLEETUP_DEVICE_PASSWORD}
groups:
  access: {site: berlin, tags: [poe]}
  datacenter: {site: frankfurt, platform: nxos}
devices:
  - {name: ber-acc-sw01, host: 10.20.0.11, model: WS-C2960X-48FPD-L, groups: [access]}
  - {name: ber-acc-sw02, host: 10.20.0.12, groups: [access], tags: [floor-2]}
  - {name: ber-dist-sw01, host: 10.20.0.2, platform: iosxe, model: C9300-48P, site: berlin}
  - {name: fra-leaf01, host: fra-leaf01.dc.example.net, groups: [datacenter]}
  - {name: sw-lab-99, host: 192.0.2.99}
";

static FLEET: LazyLock<Vec<Device>> = LazyLock::new(|| {
    crate::inventory::yaml::parse(FLEET_YAML)
        .expect("the fuzz fleet parses")
        .into_iter()
        .enumerate()
        .map(|(i, spec)| device(i as i64, spec))
        .collect()
});

fn device(id: i64, spec: DeviceSpec) -> Device {
    Device {
        id,
        spec,
        host_key: None,
        facts: Facts::default(),
        created_at: String::new(),
        updated_at: String::new(),
        source: None,
    }
}

/// Parse a playbook. An accepted playbook holds what validation promises (a name, valid image
/// file names, growing waves, windows that read back from their own text, shares within the
/// fleet), and its plan over a small fleet places every device at most once; a refused one
/// says where.
pub fn playbook(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match crate::playbook::parse(text) {
        Ok(pb) => {
            assert!(!pb.name.trim().is_empty(), "playbook without a name");
            assert_eq!(
                crate::playbook::parse(text).ok().as_ref(),
                Some(&pb),
                "parsing is not deterministic"
            );
            for img in pb.image.value.all() {
                assert!(crate::images::validate_file_name(&img.value).is_ok());
            }
            let shares = pb.wave_shares();
            for total in [0usize, 1, 3, 1000] {
                let mut last = 0;
                for s in &shares {
                    let n = s.of(total);
                    assert!(n <= total, "wave {s} of {total} devices is {n}");
                    assert!(n >= last, "waves shrink: {shares:?}");
                    last = n;
                }
            }
            for w in pb.schedule.windows() {
                let again = Window::parse(&w.to_string())
                    .unwrap_or_else(|e| panic!("window {w} does not read back: {e}"));
                assert_eq!(again.to_string(), w.to_string());
            }
            let plan = plan(&pb, &FLEET, &|_| Some("15.2(7)E8".to_string()), &[]);
            let mut seen = HashSet::new();
            for name in plan
                .devices()
                .map(|d| d.device.as_str())
                .chain(plan.skipped.iter().map(|s| s.device.as_str()))
            {
                assert!(seen.insert(name), "device {name} planned twice");
            }
            assert_eq!(plan.total, plan.devices().count());
            assert!(plan.total <= FLEET.len());
        }
        Err(e) => check_located(text, &e),
    }
}

/// Parse an inventory as a YAML file and as the JSON body of `POST /devices`. An accepted file
/// exports to YAML that imports to the same devices (without `--with-secrets`, to the same
/// devices less their inline secrets); names are unique; a refused one says where. A JSON
/// device that validates is a fixed point of validation.
pub fn inventory(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match crate::inventory::yaml::parse(text) {
        Ok(specs) => {
            let mut names = HashSet::new();
            for s in &specs {
                assert!(names.insert(s.name.as_str()), "duplicate device {}", s.name);
                assert!(s.port > 0);
                assert!(s.groups.is_sorted() && s.tags.is_sorted());
            }
            let devices: Vec<Device> = specs
                .iter()
                .cloned()
                .enumerate()
                .map(|(i, s)| device(i as i64, s))
                .collect();
            let full = crate::inventory::yaml::export(&devices, true)
                .unwrap_or_else(|e| panic!("export failed: {e}"));
            let back = crate::inventory::yaml::parse(&full)
                .unwrap_or_else(|e| panic!("export does not import: {e}\n{full}"));
            assert_eq!(
                back, specs,
                "export with secrets does not import to the same devices"
            );
            let bare = crate::inventory::yaml::export(&devices, false)
                .unwrap_or_else(|e| panic!("export failed: {e}"));
            assert!(
                !specs
                    .iter()
                    .filter_map(|s| s.credentials.password.as_deref())
                    .any(|p| p.len() > 3 && bare.contains(&format!(" {p}"))),
                "export without secrets shows a password"
            );
            let back = crate::inventory::yaml::parse(&bare)
                .unwrap_or_else(|e| panic!("export does not import: {e}\n{bare}"));
            let stripped: Vec<DeviceSpec> = specs
                .into_iter()
                .map(|mut s| {
                    s.credentials.password = None;
                    s.credentials.enable_secret = None;
                    s
                })
                .collect();
            assert_eq!(
                back, stripped,
                "export without secrets imports to other devices"
            );
        }
        Err(e) => check_located(text, &e),
    }
    if let Ok(input) = serde_json::from_str::<DeviceInput>(text) {
        match input.validate() {
            Ok(spec) => {
                let again = DeviceInput {
                    name: spec.name.as_str().to_string(),
                    host: spec.host.clone(),
                    port: Some(spec.port),
                    platform: spec.platform.as_str().to_string(),
                    site: spec.site.clone(),
                    model: spec.model.clone(),
                    groups: spec.groups.clone(),
                    tags: spec.tags.clone(),
                    username: spec.credentials.username.clone(),
                    password: spec.credentials.password.clone(),
                    password_env: spec.credentials.password_env.clone(),
                    enable_secret: spec.credentials.enable_secret.clone(),
                    enable_secret_env: spec.credentials.enable_secret_env.clone(),
                };
                assert_eq!(
                    again.validate().as_ref(),
                    Ok(&spec),
                    "validation is not idempotent"
                );
            }
            Err(e) => assert!(!e.message.is_empty(), "refusal without a message"),
        }
    }
}
