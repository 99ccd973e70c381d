//! OpenAPI schemas written out by hand where a derive cannot say what the service enforces:
//! the device description and the YAML inventory file, with the patterns `inventory` states
//! once and validates with; path parameters with their patterns.

use std::borrow::Cow;

use serde_json::{Value, json};
use utoipa::openapi::RefOr;
use utoipa::openapi::extensions::Extensions;
use utoipa::openapi::schema::{
    AdditionalProperties, ArrayBuilder, ObjectBuilder, Schema, SchemaType, Type,
};
use utoipa::{PartialSchema, ToSchema};

use crate::inventory::{
    DeviceInput, ENV_NAME_PATTERN, HOST_MAX_LEN, HOST_PATTERN, LABEL_PATTERN, NAME_PATTERN,
    Platform,
};

/// Where a device description comes from: JSON, or a YAML file, where a string field also
/// takes any other scalar (`site: 1234` is the string "1234"), as YAML readers do.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Syntax {
    Json,
    Yaml,
}

fn string() -> ObjectBuilder {
    ObjectBuilder::new().schema_type(Type::String)
}

fn text(syntax: Syntax, nullable: bool) -> ObjectBuilder {
    let mut types = vec![Type::String];
    if syntax == Syntax::Yaml {
        types.extend([Type::Number, Type::Boolean]);
    }
    if nullable {
        types.push(Type::Null);
    }
    ObjectBuilder::new().schema_type(SchemaType::from_iter(types))
}

/// A value or `null` (an `Option` that serde reads from `null` as from an absent field).
fn nullable(of: Type) -> ObjectBuilder {
    ObjectBuilder::new().schema_type(SchemaType::from_iter([of, Type::Null]))
}

fn platform_enum(b: ObjectBuilder) -> ObjectBuilder {
    b.enum_values(Some(Platform::ALL.map(|p| p.as_str())))
}

pub(super) fn device_name() -> ObjectBuilder {
    string().pattern(Some(NAME_PATTERN))
}

fn host(syntax: Syntax) -> ObjectBuilder {
    text(syntax, false)
        .pattern(Some(HOST_PATTERN))
        .max_length(Some(HOST_MAX_LEN))
}

fn labels(syntax: Syntax, what: &str) -> ArrayBuilder {
    ArrayBuilder::new()
        .items(text(syntax, false).pattern(Some(LABEL_PATTERN)))
        .description(Some(what))
}

fn port(b: ObjectBuilder) -> ObjectBuilder {
    b.minimum(Some(1)).maximum(Some(65535))
}

/// Keywords utoipa has no builder for (`not`, `allOf` of `not`s, `propertyNames`), added as
/// extra keys of the schema object; they serialise beside the others.
fn extra(pairs: impl IntoIterator<Item = (&'static str, Value)>) -> Option<Extensions> {
    Some(Extensions::from_iter(pairs))
}

/// `password` and `password_env` (and the enable secret's pair) are not both strings.
fn one_of_each_secret() -> Value {
    let both = |a: &str, b: &str| json!({"not": {"required": [a, b], "properties": {a: {"type": "string"}, b: {"type": "string"}}}});
    json!([
        both("password", "password_env"),
        both("enable_secret", "enable_secret_env")
    ])
}

/// The values a device has or inherits: everything but its name, host and groups.
fn inheritable(b: ObjectBuilder, syntax: Syntax, platform_optional: bool) -> ObjectBuilder {
    let platform = if platform_optional {
        platform_enum(nullable(Type::String))
    } else {
        platform_enum(string())
    };
    let opt = || text(syntax, true);
    b.property(
        "platform",
        platform.description(Some("Selects the driver: ios, iosxe or nxos.")),
    )
    .property(
        "port",
        port(nullable(Type::Integer)).description(Some("SSH port (default 22).")),
    )
    .property("site", opt().pattern(Some(LABEL_PATTERN)))
    .property("model", opt())
    .property(
        "tags",
        labels(syntax, "Tags, for filters and playbook targets."),
    )
    .property("username", opt())
    .property(
        "password",
        opt().description(Some("Write-only; never returned.")),
    )
    .property(
        "password_env",
        opt().pattern(Some(ENV_NAME_PATTERN)).description(Some(
            "The service's environment variable holding the password.",
        )),
    )
    .property(
        "enable_secret",
        opt().description(Some("Write-only; never returned.")),
    )
    .property("enable_secret_env", opt().pattern(Some(ENV_NAME_PATTERN)))
    .additional_properties(Some(AdditionalProperties::FreeForm(false)))
}

fn device_entry(syntax: Syntax) -> ObjectBuilder {
    // In a file, a device may take its platform from a group or `defaults`.
    let platform_optional = syntax == Syntax::Yaml;
    let b = ObjectBuilder::new()
        .schema_type(Type::Object)
        .property("name", text(syntax, false).pattern(Some(NAME_PATTERN)))
        .property(
            "host",
            host(syntax).description(Some("IP address or DNS name.")),
        )
        .property("groups", labels(syntax, "Groups the device belongs to."))
        .required("name")
        .required("host");
    let b = if platform_optional {
        b
    } else {
        b.required("platform")
    };
    inheritable(b, syntax, platform_optional).extensions(extra([("allOf", one_of_each_secret())]))
}

impl PartialSchema for DeviceInput {
    fn schema() -> RefOr<Schema> {
        device_entry(Syntax::Json)
            .description(Some(
                "A device as an operator describes it. Unknown fields are refused; give a \
                 password or password_env, not both (likewise the enable secret).",
            ))
            .into()
    }
}

impl ToSchema for DeviceInput {}

impl PartialSchema for crate::sync::SyncRequest {
    fn schema() -> RefOr<Schema> {
        use crate::sync::{MAX_SCOPE_LEN, SCOPE_PATTERN, SOURCE_ID_PATTERN};
        let opt = || text(Syntax::Json, true);
        let record = ObjectBuilder::new()
            .schema_type(Type::Object)
            .property(
                "id",
                string()
                    .pattern(Some(SOURCE_ID_PATTERN))
                    .description(Some("The device's id in the source.")),
            )
            .property("name", device_name())
            .property(
                "host",
                host(Syntax::Json).description(Some("The primary IP address.")),
            )
            .property("platform", platform_enum(string()))
            .property("site", opt().pattern(Some(LABEL_PATTERN)))
            .property("model", opt())
            .property("groups", labels(Syntax::Json, "The role, as a group."))
            .property("tags", labels(Syntax::Json, "Tags."))
            .required("id")
            .required("name")
            .required("host")
            .required("platform")
            .additional_properties(Some(AdditionalProperties::FreeForm(false)));
        let skip = ObjectBuilder::new()
            .schema_type(Type::Object)
            .property("id", string())
            .property("name", string())
            .property("reason", string())
            .required("id")
            .required("name")
            .required("reason")
            .additional_properties(Some(AdditionalProperties::FreeForm(false)));
        let defaults = ObjectBuilder::new()
            .schema_type(SchemaType::from_iter([Type::Object, Type::Null]))
            .property(
                "port",
                port(nullable(Type::Integer)).description(Some("SSH port of new devices (22).")),
            )
            .property("username", opt())
            .property("password_env", opt().pattern(Some(ENV_NAME_PATTERN)))
            .property("enable_secret_env", opt().pattern(Some(ENV_NAME_PATTERN)))
            .additional_properties(Some(AdditionalProperties::FreeForm(false)))
            .description(Some(
                "For the devices the sync adds, or that lack them; never overwriting.",
            ));
        ObjectBuilder::new()
            .schema_type(Type::Object)
            .description(Some(
                "What one scope of a source of truth holds now (docs/sync.md). A record whose \
                 name or id came earlier in `devices` is skipped, with the reason.",
            ))
            .property(
                "scope",
                string()
                    .pattern(Some(SCOPE_PATTERN))
                    .max_length(Some(MAX_SCOPE_LEN))
                    .description(Some(
                        "`KIND URL [FILTER]`: the scope's devices not in `devices` become absent.",
                    )),
            )
            .property("dry_run", ObjectBuilder::new().schema_type(Type::Boolean))
            .property("devices", ArrayBuilder::new().items(record))
            .property(
                "skipped",
                ArrayBuilder::new().items(skip).description(Some(
                    "Devices the source holds that could not be taken: never marked absent.",
                )),
            )
            .property("defaults", defaults)
            .required("scope")
            .required("devices")
            .additional_properties(Some(AdditionalProperties::FreeForm(false)))
            .into()
    }
}

impl ToSchema for crate::sync::SyncRequest {}

/// The YAML inventory file that `POST /inventory/import` reads and `GET /inventory/export`
/// writes: `defaults`, `groups` (values their members inherit) and `devices`.
pub(super) struct InventoryFile;

impl PartialSchema for InventoryFile {
    fn schema() -> RefOr<Schema> {
        let layer = || {
            inheritable(
                ObjectBuilder::new().schema_type(Type::Object),
                Syntax::Yaml,
                true,
            )
            .extensions(extra([("allOf", one_of_each_secret())]))
        };
        ObjectBuilder::new()
            .schema_type(Type::Object)
            .description(Some(
                "An inventory file. A device takes a value it does not set from its groups in \
                 the order listed, then from `defaults`; every device must end up with a \
                 platform, and names must be unique in the file. A string field also takes \
                 another YAML scalar, read as its text (`site: 1234`).",
            ))
            .property(
                "defaults",
                layer()
                    .schema_type(SchemaType::from_iter([Type::Object, Type::Null]))
                    .description(Some("Values for every device (empty: none).")),
            )
            .property(
                "groups",
                ObjectBuilder::new()
                    .schema_type(Type::Object)
                    .additional_properties(Some(layer()))
                    .description(Some("Values for the members of each group."))
                    .extensions(extra([(
                        "propertyNames",
                        json!({"pattern": LABEL_PATTERN}),
                    )])),
            )
            .property(
                "devices",
                ArrayBuilder::new().items(device_entry(Syntax::Yaml)),
            )
            .additional_properties(Some(AdditionalProperties::FreeForm(false)))
            .into()
    }
}

impl ToSchema for InventoryFile {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("InventoryFile")
    }
}

/// A device name in a path.
pub(super) struct DeviceNameParam;

impl PartialSchema for DeviceNameParam {
    fn schema() -> RefOr<Schema> {
        device_name().into()
    }
}

impl ToSchema for DeviceNameParam {}

/// A playbook, as YAML or JSON; its fields are in docs/playbooks.md and
/// docs/playbook.schema.json.
pub(super) struct PlaybookBody;

impl PartialSchema for PlaybookBody {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::Object)
            .description(Some(
                "A playbook (docs/playbooks.md, docs/playbook.schema.json). It may still be \
                 refused with 422: its image must be in the store and its targets in the \
                 inventory.",
            ))
            .into()
    }
}

impl ToSchema for PlaybookBody {}
