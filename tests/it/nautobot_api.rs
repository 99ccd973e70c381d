//! A small client over a real Nautobot's REST API, for the source-of-truth sync tests: it seeds
//! what a device needs and creates, changes and deletes devices the way an operator would.
//!
//! The Nautobot is started by `scripts/nautobot up DIR` (scripts/test does it in its
//! "source-of-truth sync" stage), which writes FLEETUP_NAUTOBOT_URL and FLEETUP_NAUTOBOT_TOKEN
//! to DIR/env. Tests that need it are `#[ignore]`d and run with
//! `cargo test --test it nautobot -- --ignored --test-threads=1`.
//!
//! Nautobot 2.x and 3.x: no slugs (objects are found by name), locations instead of sites,
//! roles and statuses are `extras` objects tied to content types, a device's IP address hangs
//! off an interface through an ip-address-to-interface assignment, and nested objects carry
//! their fields (names, `network_driver`, `address`) only with `?depth=1`.
#![allow(dead_code)]

use reqwest::{Method, StatusCode, Url};
use serde_json::{Value, json};

/// The locations `seed` makes (of the location type `fleetup-site`).
pub const LOCATIONS: [&str; 2] = ["site-a", "site-b"];
/// The device roles `seed` makes.
pub const ROLES: [&str; 2] = ["access", "core"];
/// The manufacturer of every seeded device type and platform.
pub const MANUFACTURER: &str = "Cisco";
/// The device types (models) `seed` makes.
pub const DEVICE_TYPES: [&str; 2] = ["C9300-48P", "N9K-C93180YC-FX"];
/// The platforms `seed` makes: (name, network_driver). fleetup's `ios`, `iosxe` and `nxos`.
pub const PLATFORMS: [(&str, &str); 3] = [
    ("Cisco IOS", "cisco_ios"),
    ("Cisco IOS-XE", "cisco_xe"),
    ("Cisco NX-OS", "cisco_nxos"),
];
/// The device tags `seed` makes.
pub const TAGS: [&str; 3] = ["fleetup-canary", "fleetup-hold", "fleetup-wave-2"];
/// The device custom field (type text) that carries the running version.
pub const VERSION_FIELD: &str = "fleetup_version";
/// Every device's status (Nautobot makes it at migration).
pub const STATUS: &str = "Active";
/// The prefix that holds the devices' management addresses, in the `Global` namespace.
pub const PREFIX: &str = "127.0.0.0/8";
/// The interface `set_primary_ip` puts the primary address on.
pub const MGMT_INTERFACE: &str = "mgmt0";

pub struct Nautobot {
    base: Url,
    token: String,
    http: reqwest::Client,
}

impl Nautobot {
    /// The Nautobot that FLEETUP_NAUTOBOT_URL and FLEETUP_NAUTOBOT_TOKEN name, if both are set.
    pub fn from_env() -> Option<Nautobot> {
        let url = std::env::var("FLEETUP_NAUTOBOT_URL").ok()?;
        let token = std::env::var("FLEETUP_NAUTOBOT_TOKEN").ok()?;
        let base = Url::parse(&url)
            .unwrap_or_else(|e| panic!("FLEETUP_NAUTOBOT_URL={url:?} is no URL: {e}"));
        Some(Nautobot {
            base,
            token,
            http: fleetup::http_client::client(),
        })
    }

    /// `from_env`, or a panic that says how to get a Nautobot.
    pub fn from_env_or_panic() -> Nautobot {
        Nautobot::from_env().unwrap_or_else(|| {
            panic!(
                "FLEETUP_NAUTOBOT_URL and FLEETUP_NAUTOBOT_TOKEN are not set: start a Nautobot \
                 with `scripts/nautobot up DIR` and source DIR/env (scripts/test does both)"
            )
        })
    }

    pub fn url(&self) -> &str {
        self.base.as_str().trim_end_matches('/')
    }

    pub fn token(&self) -> &str {
        &self.token
    }

    /// The URL of an API path (`/api/...`) with query pairs, each value encoded.
    pub fn api_url(&self, path: &str, query: &[(&str, &str)]) -> Url {
        let mut url = self
            .base
            .join(path)
            .unwrap_or_else(|e| panic!("{path} on {}: {e}", self.base));
        if !query.is_empty() {
            let mut pairs = url.query_pairs_mut();
            for (k, v) in query {
                pairs.append_pair(k, v);
            }
        }
        url
    }

    /// One request with the token; the status and the JSON body (Null when empty).
    pub async fn send(
        &self,
        method: Method,
        url: Url,
        body: Option<&Value>,
    ) -> (StatusCode, Value) {
        let what = format!("{method} {url}");
        let mut req = self
            .http
            .request(method, url)
            .header("Authorization", format!("Token {}", self.token))
            .header("Accept", "application/json");
        if let Some(body) = body {
            req = req.json(body);
        }
        let resp = req.send().await.unwrap_or_else(|e| panic!("{what}: {e}"));
        let status = resp.status();
        let text = resp
            .text()
            .await
            .unwrap_or_else(|e| panic!("{what}: reading the body: {e}"));
        if text.is_empty() {
            return (status, Value::Null);
        }
        let value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{what} answered {status} with no JSON ({e}): {text}"));
        (status, value)
    }

    /// A request that must answer `want`; its body.
    async fn expect(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<&Value>,
        want: StatusCode,
    ) -> Value {
        let url = self.api_url(path, query);
        let what = format!("{method} {url}");
        let (status, value) = self.send(method, url, body).await;
        assert_eq!(status, want, "{what} {body:?}: {value}");
        value
    }

    pub async fn get(&self, path: &str, query: &[(&str, &str)]) -> Value {
        self.expect(Method::GET, path, query, None, StatusCode::OK)
            .await
    }

    pub async fn post(&self, path: &str, body: &Value) -> Value {
        self.expect(Method::POST, path, &[], Some(body), StatusCode::CREATED)
            .await
    }

    pub async fn patch(&self, path: &str, body: &Value) -> Value {
        self.expect(Method::PATCH, path, &[], Some(body), StatusCode::OK)
            .await
    }

    /// Every object of a list endpoint matching `query`, following `next` page by page.
    pub async fn list(&self, path: &str, query: &[(&str, &str)]) -> Vec<Value> {
        let mut url = self.api_url(path, query);
        let mut all = Vec::new();
        loop {
            let what = format!("GET {url}");
            let (status, page) = self.send(Method::GET, url, None).await;
            assert_eq!(status, StatusCode::OK, "{what}: {page}");
            let results = page["results"]
                .as_array()
                .unwrap_or_else(|| panic!("{what}: no results: {page}"));
            all.extend(results.iter().cloned());
            match page["next"].as_str() {
                Some(next) => {
                    url = Url::parse(next).unwrap_or_else(|e| panic!("{what}: next {next}: {e}"))
                }
                None => return all,
            }
        }
    }

    /// The id of the one object of `path` that `query` matches, if there is one.
    pub async fn find(&self, path: &str, query: &[(&str, &str)]) -> Option<String> {
        let page = self.get(path, query).await;
        let results = page["results"].as_array()?;
        assert!(
            results.len() <= 1,
            "{path} {query:?} matches {} objects",
            results.len()
        );
        results.first().map(|o| id(o, path))
    }

    /// The id of the object `query` finds, created from `body` when there is none.
    async fn ensure(&self, path: &str, query: &[(&str, &str)], body: Value) -> String {
        if let Some(id) = self.find(path, query).await {
            return id;
        }
        id(&self.post(path, &body).await, path)
    }

    /// The id of the object of `path` named `name`, which must exist.
    pub async fn id_by_name(&self, path: &str, name: &str) -> String {
        self.find(path, &[("name", name)])
            .await
            .unwrap_or_else(|| panic!("no {path} named {name:?} (did seed() run?)"))
    }

    /// Everything a device needs, made once (each object is looked up by name first, so a
    /// second `seed` changes nothing).
    pub async fn seed(&self) {
        let active = self.id_by_name("/api/extras/statuses/", STATUS).await;
        let location_type = self
            .ensure(
                "/api/dcim/location-types/",
                &[("name", "fleetup-site")],
                json!({"name": "fleetup-site", "content_types": ["dcim.device"]}),
            )
            .await;
        for name in LOCATIONS {
            self.ensure(
                "/api/dcim/locations/",
                &[("name", name)],
                json!({"name": name, "location_type": location_type, "status": active}),
            )
            .await;
        }
        for name in ROLES {
            self.ensure(
                "/api/extras/roles/",
                &[("name", name)],
                json!({"name": name, "content_types": ["dcim.device"]}),
            )
            .await;
        }
        let manufacturer = self
            .ensure(
                "/api/dcim/manufacturers/",
                &[("name", MANUFACTURER)],
                json!({"name": MANUFACTURER}),
            )
            .await;
        for model in DEVICE_TYPES {
            self.ensure(
                "/api/dcim/device-types/",
                &[("model", model), ("manufacturer", MANUFACTURER)],
                json!({"model": model, "manufacturer": manufacturer}),
            )
            .await;
        }
        for (name, driver) in PLATFORMS {
            self.ensure(
                "/api/dcim/platforms/",
                &[("name", name)],
                json!({"name": name, "network_driver": driver, "manufacturer": manufacturer}),
            )
            .await;
        }
        let namespace = self.id_by_name("/api/ipam/namespaces/", "Global").await;
        self.ensure(
            "/api/ipam/prefixes/",
            &[("prefix", PREFIX), ("namespace", "Global")],
            json!({"prefix": PREFIX, "namespace": namespace, "status": active, "type": "network"}),
        )
        .await;
        for name in TAGS {
            self.ensure(
                "/api/extras/tags/",
                &[("name", name)],
                json!({"name": name, "content_types": ["dcim.device"]}),
            )
            .await;
        }
        // The custom-field list has no `key` filter: look among the device's fields.
        let fields = self
            .list(
                "/api/extras/custom-fields/",
                &[("content_types", "dcim.device")],
            )
            .await;
        if !fields.iter().any(|f| f["key"] == VERSION_FIELD) {
            self.post(
                "/api/extras/custom-fields/",
                &json!({
                    "key": VERSION_FIELD,
                    "label": "fleetup version",
                    "type": "text",
                    "content_types": ["dcim.device"],
                    "description": "The software version fleetup last saw running",
                }),
            )
            .await;
        }
    }

    /// A new device (status Active) from seeded names; with `primary_ip` (`127.0.0.11` or
    /// `127.0.0.11/24`; /32 when no length is given) also an interface `mgmt0` carrying that
    /// address, which becomes the device's primary_ip4. Its id.
    #[allow(clippy::too_many_arguments)]
    pub async fn create_device(
        &self,
        name: &str,
        location: &str,
        role: &str,
        platform: &str,
        device_type: &str,
        tags: &[&str],
        primary_ip: Option<&str>,
    ) -> String {
        let status = self.id_by_name("/api/extras/statuses/", STATUS).await;
        let location = self.id_by_name("/api/dcim/locations/", location).await;
        let role = self.id_by_name("/api/extras/roles/", role).await;
        let platform = self.id_by_name("/api/dcim/platforms/", platform).await;
        let device_type = self
            .find("/api/dcim/device-types/", &[("model", device_type)])
            .await
            .unwrap_or_else(|| panic!("no device type {device_type:?} (did seed() run?)"));
        let mut tag_ids = Vec::new();
        for tag in tags {
            tag_ids.push(self.id_by_name("/api/extras/tags/", tag).await);
        }
        let device = self
            .post(
                "/api/dcim/devices/",
                &json!({
                    "name": name,
                    "status": status,
                    "location": location,
                    "role": role,
                    "platform": platform,
                    "device_type": device_type,
                    "tags": tag_ids,
                }),
            )
            .await;
        let id = id(&device, "/api/dcim/devices/");
        if let Some(ip) = primary_ip {
            self.set_primary_ip(&id, ip).await;
        }
        id
    }

    /// PATCH a device with a JSON merge of its fields (`{"custom_fields": {...}}`,
    /// `{"tags": [...ids]}`, `{"platform": id}`, ...); the device as answered.
    pub async fn update_device(&self, id: &str, patch: &Value) -> Value {
        self.patch(&format!("/api/dcim/devices/{id}/"), patch).await
    }

    /// Set a device's custom field `key` (a text field) to `value`.
    pub async fn set_custom_field(&self, id: &str, key: &str, value: &str) {
        self.update_device(id, &json!({"custom_fields": {key: value}}))
            .await;
    }

    /// Make `ip` (`a.b.c.d` or `a.b.c.d/len`; /32 when no length) the device's primary_ip4: the
    /// address (made in the Global namespace when it is not there yet), assigned to the
    /// device's interface `mgmt0` (made when missing).
    pub async fn set_primary_ip(&self, id: &str, ip: &str) {
        let status = self.id_by_name("/api/extras/statuses/", STATUS).await;
        let namespace = self.id_by_name("/api/ipam/namespaces/", "Global").await;
        let address = if ip.contains('/') {
            ip.to_string()
        } else {
            format!("{ip}/32")
        };
        let host = address.split('/').next().unwrap_or(&address).to_string();
        let interface = self
            .ensure(
                "/api/dcim/interfaces/",
                &[("device_id", id), ("name", MGMT_INTERFACE)],
                json!({"device": id, "name": MGMT_INTERFACE, "type": "virtual", "status": status}),
            )
            .await;
        let ip_id = self
            .ensure(
                "/api/ipam/ip-addresses/",
                &[("address", &host), ("namespace", "Global")],
                json!({"address": address, "namespace": namespace, "status": status}),
            )
            .await;
        self.ensure(
            "/api/ipam/ip-address-to-interface/",
            &[("ip_address", &ip_id), ("interface", &interface)],
            json!({"ip_address": ip_id, "interface": interface}),
        )
        .await;
        self.update_device(id, &json!({"primary_ip4": ip_id})).await;
    }

    /// Delete a device (its interfaces and their address assignments go with it; the
    /// addresses stay in IPAM).
    pub async fn delete_device(&self, id: &str) {
        self.expect(
            Method::DELETE,
            &format!("/api/dcim/devices/{id}/"),
            &[],
            None,
            StatusCode::NO_CONTENT,
        )
        .await;
    }

    /// A device at depth 1 (nested objects with their fields).
    pub async fn device(&self, id: &str) -> Value {
        self.get(&format!("/api/dcim/devices/{id}/"), &[("depth", "1")])
            .await
    }

    /// Whether a device with this id exists.
    pub async fn device_exists(&self, id: &str) -> bool {
        let url = self.api_url(&format!("/api/dcim/devices/{id}/"), &[]);
        let (status, body) = self.send(Method::GET, url, None).await;
        match status {
            StatusCode::OK => true,
            StatusCode::NOT_FOUND => false,
            other => panic!("GET device {id}: {other}: {body}"),
        }
    }

    /// A device's custom field `key`, when it holds a string.
    pub async fn custom_field(&self, id: &str, key: &str) -> Option<String> {
        self.device(id).await["custom_fields"][key]
            .as_str()
            .map(str::to_string)
    }
}

/// The `id` of an object the API answered.
fn id(object: &Value, path: &str) -> String {
    object["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{path}: an object without an id: {object}"))
        .to_string()
}

/// A tag unique to one test run (for names) and a loopback /24 of its own (127.200-249.x.0,
/// apart from the labs' ranges, for addresses), so runs against the same Nautobot never collide.
pub fn run_tag() -> (String, [u8; 2]) {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let pid = std::process::id();
    let [_, _, a, b] = (nanos ^ pid.rotate_left(16)).to_be_bytes();
    (format!("{pid:x}{nanos:x}"), [200 + a % 50, b])
}

// What a device looks like at `GET /api/dcim/devices/?depth=1&location=site-a` (Nautobot 3.2.7),
// as seen by this test; the parts the sync reads, in the order the server sends them (the
// nested objects also carry `object_type`, `display`, `url`, `natural_slug`, `created`,
// `last_updated`, `notes_url`, `custom_fields`, and more fields of their own):
//
// {"count": 1, "next": null, "previous": null, "results": [{
//   "id": "c8848e6d-0f36-441a-bb1d-861d6cc5a996", "object_type": "dcim.device", "display": "sw1",
//   "name": "sw1", "serial": "", "asset_tag": null,
//   "device_type": {"id": "…", "model": "C9300-48P", "part_number": "",
//                   "manufacturer": {"id": "…", "object_type": "dcim.manufacturer", "url": "…"}},
//   "status": {"id": "…", "name": "Active", "color": "4caf50"},
//   "role": {"id": "…", "name": "access"},
//   "tenant": null,
//   "platform": {"id": "…", "name": "Cisco IOS-XE", "network_driver": "cisco_xe",
//                "network_driver_mappings": {"netmiko": "cisco_xe", "scrapli": "cisco_iosxe",
//                                            "napalm": "ios", "pyats": "iosxe", …},
//                "napalm_driver": "", "manufacturer": {"id": "…", "url": "…"}},
//   "location": {"id": "…", "name": "site-a", "parent": null,
//                "location_type": {"id": "…", "url": "…"}, "status": {"id": "…", "url": "…"}},
//   "rack": null,
//   "primary_ip4": {"id": "…", "address": "127.0.0.11/8", "host": "127.0.0.11",
//                   "mask_length": 8, "type": "host", "ip_version": 4, "dns_name": "",
//                   "status": {"id": "…", "url": "…"}, "parent": {"id": "…", "url": "…"}},
//   "primary_ip6": null,
//   "software_version": null,
//   "created": "2026-12-06T00:14:53.673103Z", "last_updated": "2026-12-06T00:14:55.123002Z",
//   "custom_fields": {"fleetup_version": "17.9.4"},
//   "tags": [{"id": "…", "name": "fleetup-canary", "color": "9e9e9e", …}],
//   "parent_bay": null}]}
//
// Two levels down (the manufacturer under device_type or platform, the location's type) only
// `id`, `object_type` and `url` come at depth 1. A custom field the device never had a value
// for is there as null. An unknown `location` in the filter is a 400
// (`{"location": ["Select a valid choice. nope is not one of the available choices."]}`).

#[tokio::test]
#[ignore = "needs a Nautobot: scripts/test starts one (scripts/nautobot up)"]
async fn the_nautobot_harness_creates_and_reads_devices() {
    let nb = Nautobot::from_env_or_panic();
    nb.seed().await;
    // Seeding twice changes nothing.
    nb.seed().await;
    assert_eq!(
        nb.list("/api/dcim/platforms/", &[("network_driver", "cisco_xe")])
            .await
            .iter()
            .filter(|p| p["name"] == "Cisco IOS-XE")
            .count(),
        1
    );

    let (run, [a, b]) = run_tag();
    let (edge_name, core_name) = (format!("edge-{run}"), format!("core-{run}"));
    let (edge_ip, core_ip) = (format!("127.{a}.{b}.11"), format!("127.{a}.{b}.12"));
    let edge = nb
        .create_device(
            &edge_name,
            "site-a",
            "access",
            "Cisco IOS-XE",
            "C9300-48P",
            &["fleetup-canary", "fleetup-wave-2"],
            Some(&format!("{edge_ip}/24")),
        )
        .await;
    let core = nb
        .create_device(
            &core_name,
            "site-b",
            "core",
            "Cisco NX-OS",
            "N9K-C93180YC-FX",
            &[],
            Some(&core_ip),
        )
        .await;
    assert_eq!(nb.custom_field(&edge, VERSION_FIELD).await, None);
    nb.set_custom_field(&edge, VERSION_FIELD, "17.9.4").await;
    assert_eq!(
        nb.custom_field(&edge, VERSION_FIELD).await.as_deref(),
        Some("17.9.4")
    );

    // The page the sync reads, one device a page so `next` is followed too.
    let first = nb
        .get(
            "/api/dcim/devices/",
            &[("depth", "1"), ("location", "site-a"), ("limit", "1")],
        )
        .await;
    let count = first["count"].as_u64().expect("count is a number");
    assert!(count >= 1, "{first}");
    assert_eq!(first["results"].as_array().map(Vec::len), Some(1));
    assert!(first["previous"].is_null());
    assert_eq!(first["next"].is_string(), count > 1, "{first}");
    let site_a = nb
        .list(
            "/api/dcim/devices/",
            &[("depth", "1"), ("location", "site-a"), ("limit", "1")],
        )
        .await;
    assert_eq!(site_a.len() as u64, count);
    assert!(site_a.iter().all(|d| d["location"]["name"] == "site-a"));
    assert!(
        !site_a.iter().any(|d| d["name"] == core_name.as_str()),
        "the site-b device is not in site-a's list"
    );
    let d = site_a
        .iter()
        .find(|d| d["name"] == edge_name.as_str())
        .unwrap_or_else(|| panic!("{edge_name} not in site-a's list"));
    assert_eq!(d["id"], edge.as_str());
    assert_eq!(
        d["primary_ip4"]["address"],
        format!("{edge_ip}/24").as_str()
    );
    assert_eq!(d["primary_ip4"]["host"], edge_ip.as_str());
    assert_eq!(d["platform"]["name"], "Cisco IOS-XE");
    assert_eq!(d["platform"]["network_driver"], "cisco_xe");
    assert_eq!(d["location"]["name"], "site-a");
    assert_eq!(d["role"]["name"], "access");
    assert_eq!(d["status"]["name"], "Active");
    assert_eq!(d["device_type"]["model"], "C9300-48P");
    let mut tags: Vec<&str> = d["tags"]
        .as_array()
        .expect("tags is a list")
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    tags.sort_unstable();
    assert_eq!(tags, ["fleetup-canary", "fleetup-wave-2"]);
    assert_eq!(d["custom_fields"][VERSION_FIELD], "17.9.4");

    let c = nb.device(&core).await;
    assert_eq!(c["name"], core_name.as_str());
    assert_eq!(c["location"]["name"], "site-b");
    assert_eq!(c["platform"]["network_driver"], "cisco_nxos");
    assert_eq!(
        c["primary_ip4"]["address"],
        format!("{core_ip}/32").as_str()
    );
    assert_eq!(c["tags"], json!([]));
    assert_eq!(c["custom_fields"][VERSION_FIELD], Value::Null);

    // A change of primary address and of platform shows on the next read.
    let moved = format!("127.{a}.{b}.13");
    nb.set_primary_ip(&core, &moved).await;
    let cisco_ios = nb.id_by_name("/api/dcim/platforms/", "Cisco IOS").await;
    nb.update_device(&core, &json!({"platform": cisco_ios}))
        .await;
    let c = nb.device(&core).await;
    assert_eq!(c["primary_ip4"]["host"], moved.as_str());
    assert_eq!(c["platform"]["network_driver"], "cisco_ios");

    nb.delete_device(&edge).await;
    assert!(!nb.device_exists(&edge).await);
    let site_a = nb
        .list(
            "/api/dcim/devices/",
            &[("depth", "1"), ("location", "site-a")],
        )
        .await;
    assert!(!site_a.iter().any(|d| d["name"] == edge_name.as_str()));
    assert!(nb.device_exists(&core).await);
    nb.delete_device(&core).await;
    assert!(!nb.device_exists(&core).await);
}
