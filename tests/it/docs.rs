//! The operator documentation stays true to the code: every flag, environment variable and
//! default of the binary is in `docs/cli.md`, every API route in `docs/api.md` (the metrics in
//! `docs/observability.md`, checked by `metrics.rs`),
//! the container files agree with each other, and links between the docs resolve.
//! (The sample inventories and playbooks are validated in `samples.rs`.)

use std::collections::BTreeSet;
use std::path::Path;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn read(rel: &str) -> String {
    std::fs::read_to_string(Path::new(ROOT).join(rel))
        .unwrap_or_else(|e| panic!("cannot read {rel}: {e}"))
}

/// One option of a `--help` page.
#[derive(Debug, Clone)]
struct HelpFlag {
    long: String,
    env: Option<String>,
    default: Option<String>,
}

/// `fleetup ARGS... --help`, with no `FLEETUP_*` variable set, so the defaults shown are the
/// binary's own.
fn help(args: &[&str]) -> String {
    let out = crate::support::fleetup_alone()
        .args(args)
        .arg("--help")
        .output()
        .expect("run fleetup --help");
    assert!(
        out.status.success(),
        "fleetup {args:?} --help failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("help is UTF-8")
}

/// The sources of a Dockerfile's `COPY` lines (not those copying from another stage).
fn copy_sources(dockerfile: &str) -> Vec<&str> {
    dockerfile
        .lines()
        .filter_map(|l| l.strip_prefix("COPY "))
        .filter(|rest| !rest.starts_with("--from"))
        .flat_map(|rest| {
            let parts: Vec<&str> = rest.split_whitespace().collect();
            parts[..parts.len() - 1].to_vec()
        })
        .collect()
}

/// The lines of a help section (`Commands:`, `Options:`), up to the next blank line.
fn section<'a>(page: &'a str, title: &str) -> Vec<&'a str> {
    page.lines()
        .skip_while(|l| l.trim_end() != title)
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .collect()
}

fn subcommands(page: &str) -> Vec<String> {
    section(page, "Commands:")
        .iter()
        .filter(|l| l.starts_with("  ") && !l.starts_with("   "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_string)
        .collect()
}

/// Options with their `[env: …]` and `[default: …]`, from either help layout (one line per
/// option, or the flag on its own line and the description indented below it).
fn flags(page: &str) -> Vec<HelpFlag> {
    let lines: Vec<&str> = page.lines().collect();
    let start = lines
        .iter()
        .position(|l| l.trim_end() == "Options:")
        .expect("an Options: section");
    let mut entries: Vec<String> = Vec::new();
    for l in &lines[start + 1..] {
        let t = l.trim_start();
        if t.starts_with('-') {
            entries.push(t.to_string());
        } else if !t.is_empty()
            && l.starts_with(' ')
            && let Some(last) = entries.last_mut()
        {
            last.push(' ');
            last.push_str(t);
        }
    }
    entries
        .iter()
        .filter_map(|e| {
            let long = e
                .split([' ', ','])
                .find_map(|w| w.strip_prefix("--"))?
                .trim_end_matches(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
                .to_string();
            let env = e.split("[env: ").nth(1).map(|s| {
                s.chars()
                    .take_while(|c| *c != '=' && *c != ']')
                    .collect::<String>()
            });
            let default = e
                .split("[default: ")
                .nth(1)
                .and_then(|s| s.split(']').next())
                .map(str::to_string);
            Some(HelpFlag { long, env, default })
        })
        .collect()
}

/// Every command path (`[]`, `["serve"]`, `["device", "list"]`, …) and its help page.
fn all_help_pages() -> Vec<(Vec<String>, String)> {
    let mut out = Vec::new();
    let mut todo = vec![Vec::<String>::new()];
    while let Some(path) = todo.pop() {
        let args: Vec<&str> = path.iter().map(String::as_str).collect();
        let page = help(&args);
        for sub in subcommands(&page) {
            let mut p = path.clone();
            p.push(sub);
            todo.push(p);
        }
        out.push((path, page));
    }
    out
}

/// `needle` occurs in `hay` and is not just the prefix of a longer name
/// (`--ftp` must not be found inside `--ftp-user`, `/devices` not inside `/devices/{name}`).
fn mentions(hay: &str, needle: &str) -> bool {
    hay.match_indices(needle).any(|(i, _)| {
        hay[i + needle.len()..]
            .chars()
            .next()
            .is_none_or(|c| !(c.is_ascii_alphanumeric() || "-_/{}".contains(c)))
    })
}

#[test]
fn help_parser_reads_both_layouts() {
    let short = "Options:\n      --server <SERVER>  URL [env: FLEETUP_SERVER=] [default: http://127.0.0.1:8080]\n  -h, --help  Print help\n";
    let f = flags(short);
    assert_eq!(f.len(), 2, "{f:?}");
    assert_eq!(f[0].long, "server");
    assert_eq!(f[0].env.as_deref(), Some("FLEETUP_SERVER"));
    assert_eq!(f[0].default.as_deref(), Some("http://127.0.0.1:8080"));
    assert_eq!(f[1].long, "help");
    let long = "Options:\n      --data-dir <DIR>\n          Where [env: FLEETUP_DATA_DIR=/x] [default: ./fleetup-data]\n      --ftp-password <PW>\n          PW [env: FLEETUP_FTP_PASSWORD]\n";
    let f = flags(long);
    assert_eq!(f[0].long, "data-dir");
    assert_eq!(f[0].env.as_deref(), Some("FLEETUP_DATA_DIR"));
    assert_eq!(f[0].default.as_deref(), Some("./fleetup-data"));
    assert_eq!(f[1].env.as_deref(), Some("FLEETUP_FTP_PASSWORD"));
    assert_eq!(f[1].default, None);
    assert!(mentions("`--ftp ADDR`", "--ftp"));
    assert!(!mentions("`--ftp-user`", "--ftp"));
    assert!(!mentions("/api/v1/devices/{name}", "/api/v1/devices"));
}

#[test]
fn cli_md_documents_every_subcommand_flag_env_and_default() {
    let doc = read("docs/cli.md");
    let pages = all_help_pages();
    let mut missing = Vec::new();
    let mut flags_seen = 0;
    for (path, page) in &pages {
        if !path.is_empty() {
            let cmd = format!("fleetup {}", path.join(" "));
            if !mentions(&doc, &cmd) {
                missing.push(format!("command `{cmd}`"));
            }
        }
        for f in flags(page) {
            flags_seen += 1;
            let flag = format!("--{}", f.long);
            let lines: Vec<&str> = doc.lines().filter(|l| mentions(l, &flag)).collect();
            if lines.is_empty() {
                missing.push(format!("flag {flag} (of `fleetup {}`)", path.join(" ")));
                continue;
            }
            if let Some(env) = &f.env
                && !lines.iter().any(|l| mentions(l, env))
            {
                missing.push(format!("{env} on a line with {flag}"));
            }
            if let Some(default) = &f.default
                && !lines.iter().any(|l| l.contains(default.as_str()))
            {
                missing.push(format!("default {default:?} on a line with {flag}"));
            }
        }
    }
    assert!(
        pages.len() >= 15 && flags_seen >= 60,
        "the help pages were not read: {} pages, {flags_seen} flags",
        pages.len()
    );
    assert!(
        missing.is_empty(),
        "docs/cli.md is missing:\n  {}",
        missing.join("\n  ")
    );
}

#[test]
fn cli_md_explains_the_three_sources_of_serve_settings() {
    let doc = read("docs/cli.md");
    let flat = doc.split_whitespace().collect::<Vec<_>>().join(" ");
    for needle in [
        "--config FILE",
        "flag > environment variable > config file > default",
        "FLEETUP_",
    ] {
        assert!(flat.contains(needle), "docs/cli.md lacks {needle:?}");
    }
    // The example config file in the docs is accepted by the real parser: every key is a
    // long flag of `serve`.
    let block = doc
        .split("```yaml\n# /etc/fleetup/fleetup.yml\n")
        .nth(1)
        .and_then(|s| s.split("```").next())
        .expect("the config file example");
    let serve_flags: BTreeSet<String> = flags(&help(&["serve"]))
        .into_iter()
        .map(|f| f.long)
        .collect();
    let known: BTreeSet<String> = serve_flags
        .iter()
        .filter(|f| *f != "help" && *f != "log-format")
        .cloned()
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("fleetup.yml");
    std::fs::write(&file, block).unwrap();
    let pairs = fleetup::config::read_config_file(&file, &known)
        .unwrap_or_else(|e| panic!("the example config file in docs/cli.md: {e}"));
    assert!(pairs.iter().any(|(k, _)| k == "FLEETUP_DATA_DIR"));
}

#[test]
fn api_md_documents_every_route() {
    let doc = read("docs/api.md");
    let api = serde_json::to_value(fleetup::api::openapi()).unwrap();
    let paths = api["paths"]
        .as_object()
        .expect("paths in the OpenAPI document");
    assert!(paths.len() >= 10, "{paths:?}");
    let mut missing = Vec::new();
    for (path, ops) in paths {
        let full = format!("/api/v1{path}");
        for method in ops.as_object().unwrap().keys() {
            let m = format!("`{}`", method.to_uppercase());
            let documented = doc
                .lines()
                .any(|l| l.contains(&m) && mentions(l, &format!("`{full}`")));
            if !documented {
                missing.push(format!("{} {full}", method.to_uppercase()));
            }
        }
    }
    for open in ["/api/v1/health", "/api/v1/openapi.json", "/metrics"] {
        if !mentions(&doc, &format!("`{open}`")) {
            missing.push(open.to_string());
        }
    }
    for shape in [
        r#"{"error": {"code""#,
        "Last-Event-ID",
        "?token=",
        "dry_run=true",
        "format=csv",
    ] {
        if !doc.contains(shape) {
            missing.push(shape.to_string());
        }
    }

    // The metrics themselves are documented in docs/observability.md, checked against the
    // running service by `metrics.rs`.
    if !doc.contains("(observability.md)") {
        missing.push("a link to observability.md for the metrics".to_string());
    }
    assert!(
        missing.is_empty(),
        "docs/api.md is missing:\n  {}",
        missing.join("\n  ")
    );
}

fn compose() -> serde_json::Value {
    serde_saphyr::from_str(&read("docker-compose.yml"))
        .unwrap_or_else(|e| panic!("docker-compose.yml is not valid YAML: {e}"))
}

fn strings(v: &serde_json::Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn compose_file_has_the_service_its_volume_and_ports() {
    let c = compose();
    let svc = &c["services"]["fleetup"];
    assert!(svc.is_object(), "no service `fleetup`: {c}");
    assert!(
        svc["build"].is_string() || svc["build"].is_object(),
        "fleetup is built from the Dockerfile"
    );

    let volumes = strings(&svc["volumes"]);
    let data = volumes
        .iter()
        .find(|v| v.split(':').nth(1) == Some("/var/lib/fleetup"))
        .unwrap_or_else(|| panic!("no volume at /var/lib/fleetup: {volumes:?}"));
    let name = data.split(':').next().unwrap();
    assert!(
        c["volumes"].get(name).is_some(),
        "the data volume {name} is not a named volume of the file"
    );

    let ports = strings(&svc["ports"]);
    for want in ["8080:8080", "69:69/udp", "21:21"] {
        assert!(ports.iter().any(|p| p == want), "port {want}: {ports:?}");
    }
    let env = &svc["environment"];
    assert!(
        env.get("FLEETUP_API_TOKEN").is_some_and(|v| v.is_null()),
        "FLEETUP_API_TOKEN is taken from the caller's environment: {env}"
    );

    // The published passive range is the one the image's CMD gives --ftp-passive-ports, and
    // the one it EXPOSEs.
    let dockerfile = read("Dockerfile");
    let cmd = dockerfile
        .lines()
        .find(|l| l.starts_with("CMD "))
        .expect("a CMD line");
    let cmd: Vec<String> = serde_json::from_str(cmd.trim_start_matches("CMD ")).unwrap();
    let i = cmd
        .iter()
        .position(|a| a == "--ftp-passive-ports")
        .expect("--ftp-passive-ports in CMD");
    let range = &cmd[i + 1];
    assert!(
        ports.iter().any(|p| p == &format!("{range}:{range}")),
        "passive range {range} is published: {ports:?}"
    );
    let expose = dockerfile
        .lines()
        .find(|l| l.starts_with("EXPOSE "))
        .expect("an EXPOSE line");
    for want in ["8080", "69/udp", "21", range.as_str()] {
        assert!(
            expose.split_whitespace().any(|p| p == want),
            "EXPOSE {want}: {expose}"
        );
    }
    assert!(dockerfile.contains(r#"ENTRYPOINT ["fleetup"]"#));
    assert!(dockerfile.contains("VOLUME /var/lib/fleetup"));
    let data_dir = cmd
        .iter()
        .position(|a| a == "--data-dir")
        .map(|i| cmd[i + 1].as_str());
    assert_eq!(data_dir, Some("/var/lib/fleetup"));
    // The CMD parses as a real `serve` command line.
    help(&cmd.iter().map(String::as_str).collect::<Vec<_>>());
}

#[test]
fn compose_cluster_has_postgres_two_nodes_and_an_agent_with_valid_commands() {
    let c = compose();
    let services = &c["services"];
    for name in ["postgres", "node-a", "node-b", "agent-lab"] {
        assert_eq!(
            strings(&services[name]["profiles"]),
            vec!["cluster".to_string()],
            "{name} is in the optional cluster profile"
        );
    }
    let mut advertised = Vec::new();
    for node in ["node-a", "node-b"] {
        let command = strings(&services[node]["command"]);
        assert_eq!(command.first().map(String::as_str), Some("serve"));
        help(&command.iter().map(String::as_str).collect::<Vec<_>>());
        let env = &services[node]["environment"];
        let url = env["FLEETUP_DATABASE_URL"].as_str().unwrap_or_default();
        assert!(
            url.starts_with("postgres://"),
            "{node} uses PostgreSQL: {env}"
        );
        assert!(
            url.contains("@postgres:5432/"),
            "{node} reaches the postgres service"
        );
        let at = command
            .iter()
            .position(|a| a == "--advertise-url")
            .expect("--advertise-url");
        advertised.push(command[at + 1].clone());
        assert!(
            command[at + 1].starts_with(&format!("http://{node}:")),
            "{node} advertises its own service name"
        );
    }
    assert_ne!(advertised[0], advertised[1]);
    let agent = strings(&services["agent-lab"]["command"]);
    assert_eq!(agent.first().map(String::as_str), Some("agent"));
    help(&agent.iter().map(String::as_str).collect::<Vec<_>>());
    let server = agent
        .iter()
        .position(|a| a == "--server")
        .expect("--server");
    assert!(
        advertised.contains(&agent[server + 1]),
        "the agent talks to a node: {}",
        agent[server + 1]
    );
    // The agent never gets the admin token: it reads an agent token of its site from a file
    // that `agent-lab-token` mints once, with a real `token create` command line.
    let env = &services["agent-lab"]["environment"];
    assert!(
        env.get("FLEETUP_AGENT_TOKEN").is_none(),
        "the agent takes no token from the caller's environment: {env}"
    );
    let file = env["FLEETUP_AGENT_TOKEN_FILE"]
        .as_str()
        .expect("the agent reads its token from a file");
    let minter = &services["agent-lab-token"];
    assert_eq!(strings(&minter["profiles"]), vec!["cluster".to_string()]);
    assert_eq!(
        services["agent-lab"]["depends_on"]["agent-lab-token"]["condition"],
        "service_completed_successfully"
    );
    let script = strings(&minter["command"]).join("\n");
    assert!(
        script.contains(&format!("f={file}\n")),
        "the token goes to {file}: {script}"
    );
    let create: Vec<&str> = script
        .lines()
        .find(|l| l.trim_start().starts_with("fleetup token create"))
        .expect("a `fleetup token create` line")
        .split_whitespace()
        .skip(1)
        .take_while(|a| *a != ">")
        .collect();
    help(&create);
    for pair in [["--role", "agent"], ["--site", "lab"]] {
        assert!(create.windows(2).any(|w| w == pair), "{pair:?}: {create:?}");
    }
    assert!(create.contains(&"--secret-only"), "{create:?}");
    assert!(
        agent.windows(2).any(|w| w == ["--site", "lab"]),
        "the token's site is the agent's: {agent:?}"
    );
    let mount_of = |service: &str| {
        strings(&services[service]["volumes"])
            .into_iter()
            .find(|v| v.starts_with("agent-lab-token:"))
            .unwrap_or_else(|| panic!("{service} mounts agent-lab-token"))
    };
    let dir = mount_of("agent-lab-token")
        .split(':')
        .nth(1)
        .unwrap_or_default()
        .to_string();
    assert!(file.starts_with(&format!("{dir}/")), "{file} is in {dir}");
    assert_eq!(
        mount_of("agent-lab"),
        format!("agent-lab-token:{dir}:ro"),
        "the agent reads the token's volume, read-only"
    );
    // Docker copies a mount point's owner from the image into a new volume: the image's user
    // must own the agent's directories.
    let dockerfile = read("Dockerfile");
    for path in ["/var/lib/fleetup-agent ", dir.as_str()] {
        assert!(
            dockerfile.contains(path.trim_end()),
            "the Dockerfile makes {path}"
        );
    }
    for volume in [
        "fleetup-pg",
        "node-a-data",
        "node-b-data",
        "agent-lab-cache",
        "agent-lab-token",
    ] {
        assert!(c["volumes"].get(volume).is_some(), "volume {volume}");
    }
}

#[test]
fn compose_lab_is_optional_and_runs_a_valid_lab_command() {
    let c = compose();
    let lab = &c["services"]["lab"];
    assert_eq!(strings(&lab["profiles"]), vec!["lab".to_string()]);
    assert_eq!(lab["network_mode"], "service:fleetup");
    let command = strings(&lab["command"]);
    assert_eq!(command.first().map(String::as_str), Some("lab"));
    // It parses as a real `lab` command line.
    help(&command.iter().map(String::as_str).collect::<Vec<_>>());
    // Its inventory lands in a volume the fleetup service can read.
    let inv = command
        .iter()
        .position(|a| a == "--write-inventory")
        .map(|i| command[i + 1].clone())
        .expect("--write-inventory");
    let fleetup_volumes = strings(&c["services"]["fleetup"]["volumes"]);
    assert!(
        fleetup_volumes.iter().any(|v| {
            let mount = v.split(':').nth(1).unwrap_or_default();
            inv.starts_with(&format!("{mount}/"))
        }),
        "{inv} is not visible to the fleetup service: {fleetup_volumes:?}"
    );
}

#[test]
fn dockerignore_keeps_build_output_out_of_the_context() {
    let ignore = read(".dockerignore");
    let entries: Vec<&str> = ignore
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    for want in ["target", "node_modules", "tests/artifacts"] {
        assert!(entries.contains(&want), ".dockerignore lacks {want}");
    }
    // Everything the build stage copies is in the context.
    let dockerfile = read("Dockerfile");
    for src in copy_sources(&dockerfile) {
        assert!(
            Path::new(ROOT).join(src).exists(),
            "COPY {src}: no such path"
        );
        assert!(
            !entries.contains(&src),
            "COPY {src} but .dockerignore drops it"
        );
    }
}

#[test]
fn links_between_docs_resolve() {
    let docs = Path::new(ROOT).join("docs");
    let mut broken = Vec::new();
    let mut checked = 0;
    for entry in std::fs::read_dir(&docs).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "md") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        for link in text.split("](").skip(1).filter_map(|s| s.split(')').next()) {
            if link.starts_with("http") || link.starts_with('#') {
                continue;
            }
            let (file, anchor) = link.split_once('#').unwrap_or((link, ""));
            let target = docs.join(file);
            checked += 1;
            if !target.exists() {
                broken.push(format!("{}: {link}", path.display()));
                continue;
            }
            if !anchor.is_empty() && target.extension().is_some_and(|e| e == "md") {
                let t = std::fs::read_to_string(&target).unwrap();
                let anchors: Vec<String> = t
                    .lines()
                    .filter_map(|l| l.strip_prefix('#'))
                    .map(|h| slug(h.trim_start_matches('#').trim()))
                    .collect();
                if !anchors.iter().any(|a| a == anchor) {
                    broken.push(format!("{}: {link} (no such heading)", path.display()));
                }
            }
        }
    }
    assert!(checked >= 10, "only {checked} links found");
    assert!(
        broken.is_empty(),
        "broken links:\n  {}",
        broken.join("\n  ")
    );
}

/// GitHub's heading anchors: lower case, punctuation dropped, spaces to dashes.
fn slug(heading: &str) -> String {
    heading
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// Top-level paths of the repository that the binary compiles in: `include_str!` and
/// `include_bytes!` targets, rust-embed folders, the migrations.
fn compiled_in_paths() -> BTreeSet<String> {
    let root = Path::new(ROOT);
    let mut out = BTreeSet::new();
    let mut dirs = vec![root.join("src")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            for marker in ["include_str!(\"", "include_bytes!(\""] {
                for rest in text.split(marker).skip(1) {
                    let rel = rest.split('"').next().unwrap();
                    let target = path.parent().unwrap().join(rel);
                    let target = target.canonicalize().unwrap_or(target);
                    if let Ok(inside) = target.strip_prefix(root.canonicalize().unwrap())
                        && let Some(first) = inside.components().next()
                    {
                        out.insert(first.as_os_str().to_string_lossy().into_owned());
                    }
                }
            }
            for marker in ["#[folder = \"", "migrate!(\""] {
                for rest in text.split(marker).skip(1) {
                    let rel = rest.split('"').next().unwrap();
                    let first = rel.trim_start_matches("./").split('/').next().unwrap();
                    out.insert(first.to_string());
                }
            }
        }
    }
    out
}

#[test]
fn docker_build_stage_copies_everything_the_binary_compiles_in() {
    let dockerfile = read("Dockerfile");
    let build_stage = dockerfile
        .split("\nFROM ")
        .nth(1)
        .expect("a build stage after the first FROM");
    let copied: BTreeSet<String> = copy_sources(build_stage)
        .into_iter()
        .map(|p| p.trim_end_matches('/').to_string())
        .collect();
    let mut needed = compiled_in_paths();
    assert!(
        needed.contains("migrations") && needed.contains("web"),
        "the scan of src/ found {needed:?}"
    );
    needed.extend(["Cargo.toml", "Cargo.lock", "build.rs", "src"].map(String::from));
    let missing: Vec<&String> = needed.difference(&copied).collect();
    assert!(
        missing.is_empty(),
        "the Dockerfile's build stage does not COPY {missing:?} (copied: {copied:?})"
    );
}
