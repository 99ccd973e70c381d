//! Every sample file shipped in the repository passes validation.

#[test]
fn sample_inventories_are_valid() {
    let mut checked = 0;
    for entry in std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/inventory")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yml" || e == "yaml") {
            let text = std::fs::read_to_string(&path).unwrap();
            let devices = fleetup::inventory::yaml::parse(&text)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert!(!devices.is_empty(), "{} has no devices", path.display());
            checked += 1;
        }
    }
    assert!(checked >= 1);
}

#[test]
fn sample_playbooks_are_valid() {
    let mut checked = 0;
    for entry in std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/playbooks")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yml" || e == "yaml") {
            let text = std::fs::read_to_string(&path).unwrap();
            let pb = fleetup::playbook::parse(&text)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert!(!pb.name.is_empty());
            checked += 1;
        }
    }
    assert!(checked >= 2);
}
