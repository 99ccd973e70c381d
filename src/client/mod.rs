//! The command-line clients of the REST API (`fleetup inventory`, `image`, `device`, `run`,
//! `rollout`): thin wrappers that print what the service answers. Responses are read into the
//! service's own response types (`crate::api`), not picked out of untyped JSON.

use std::path::Path;

use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::api::{ErrorBody, ImportResult, RolloutDetail, RolloutList};
use crate::images::ImageRecord;
use crate::rollout::model::{JobState, RolloutState, StateName};

/// A rollout as a client reads it: state names of a newer service are kept as sent.
pub type Rollout = RolloutDetail<StateName<RolloutState>, StateName<JobState>>;
/// The rollout list as a client reads it.
pub type Rollouts = RolloutList<StateName<RolloutState>>;

/// Exit codes of the client commands, as docs/cli.md lists them.
pub mod exit {
    /// Done; for `run`, `follow` and `upgrade`: every targeted device ended upgraded or was
    /// already current (also "nothing to do").
    pub const OK: u8 = 0;
    /// The rollout ended (or halted) without every targeted device upgraded.
    pub const NOT_ALL_UPGRADED: u8 = 1;
    /// The command could not be done: bad playbook or arguments, unknown id, service
    /// unreachable or refusing the request.
    pub const ERROR: u8 = 2;
    /// Ctrl-C while following: the CLI detached, the rollout goes on in the service.
    pub const DETACHED: u8 = 130;
}

/// Where the service is and how to authenticate.
#[derive(clap::Args, Debug, Clone)]
pub struct ClientArgs {
    /// URL of the fleetup service.
    #[arg(
        long,
        global = true,
        env = "FLEETUP_SERVER",
        default_value = "http://127.0.0.1:8080"
    )]
    pub server: String,
    /// API token (default: FLEETUP_API_TOKEN, else ./fleetup-data/api-token when readable).
    #[arg(long, global = true, env = "FLEETUP_API_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(
        "cannot reach the fleetup service at {url}: {source}; is `fleetup serve` running? (set --server or FLEETUP_SERVER)"
    )]
    Connect {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    /// The service refused the request; `message` is its own words, said once.
    #[error("{message}")]
    Api {
        status: StatusCode,
        code: String,
        message: String,
        /// Line and column of the problem in the document sent (playbook, inventory).
        location: Option<(u64, u64)>,
    },
    /// A problem at a line and column of a file the user gave.
    #[error("{path} line {line}, column {column}: {message}")]
    InFile {
        path: String,
        line: u64,
        column: u64,
        message: String,
    },
    #[error("cannot read {path}: {source}")]
    File {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("unexpected answer from the service: {0}")]
    Decode(String),
}

impl ClientError {
    /// Name `path` as the document a located error of the service is about.
    pub fn in_file(self, path: &Path) -> ClientError {
        match self {
            ClientError::Api {
                location: Some((line, column)),
                message,
                ..
            } if line > 0 => {
                // The service's message starts with the position; say it once, after the file.
                let prefix = format!("line {line}, column {column}: ");
                let message = message
                    .strip_prefix(&prefix)
                    .map_or(message.clone(), str::to_string);
                ClientError::InFile {
                    path: path.display().to_string(),
                    line,
                    column,
                    message,
                }
            }
            e => e,
        }
    }

    /// The service's error code (`not_found`, `nothing_to_do`, …), when it answered one.
    pub fn code(&self) -> Option<&str> {
        match self {
            ClientError::Api { code, .. } => Some(code),
            _ => None,
        }
    }
}

/// A client of one service.
#[derive(Clone)]
pub struct Client {
    base: String,
    token: Option<String>,
    http: reqwest::Client,
}

impl Client {
    pub(crate) fn new(server: &str, token: Option<String>) -> Self {
        Self {
            base: server.trim_end_matches('/').to_string(),
            token,
            http: crate::http_client::client(),
        }
    }

    /// From the command line, falling back to the token file of a local default data dir.
    pub fn from_args(args: &ClientArgs) -> Self {
        let token = args.token.clone().or_else(|| {
            std::fs::read_to_string("fleetup-data/api-token")
                .ok()
                .map(|t| t.trim().to_string())
        });
        Self::new(&args.server, token)
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}/api/v1{}", self.base, path)
    }

    fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        let mut rb = self.http.request(method, self.url(path));
        if let Some(t) = &self.token {
            rb = rb.bearer_auth(t);
        }
        rb
    }

    async fn send(&self, rb: reqwest::RequestBuilder) -> Result<reqwest::Response, ClientError> {
        let resp = rb.send().await.map_err(|source| ClientError::Connect {
            url: self.base.clone(),
            source,
        })?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status();
        let error = resp.json::<ErrorBody>().await.ok().map(|b| b.error);
        let code = error.as_ref().map(|e| e.code.clone()).unwrap_or_default();
        let location = error.as_ref().and_then(|e| Some((e.line?, e.column?)));
        let mut message = match error {
            Some(e) => e.message,
            None => format!("the service answered {status} without a reason"),
        };
        if status == StatusCode::UNAUTHORIZED {
            message.push_str(" (pass --token or set FLEETUP_API_TOKEN)");
        }
        Err(ClientError::Api {
            status,
            code,
            message,
            location,
        })
    }

    pub async fn get_json<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        let resp = self.send(self.request(Method::GET, path)).await?;
        resp.json()
            .await
            .map_err(|e| ClientError::Decode(e.to_string()))
    }

    pub async fn get_text(&self, path: &str) -> Result<String, ClientError> {
        let resp = self.send(self.request(Method::GET, path)).await?;
        resp.text()
            .await
            .map_err(|e| ClientError::Decode(e.to_string()))
    }

    pub async fn post_json<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &Value,
    ) -> Result<T, ClientError> {
        let resp = self
            .send(self.request(Method::POST, path).json(body))
            .await?;
        resp.json()
            .await
            .map_err(|e| ClientError::Decode(e.to_string()))
    }

    pub async fn put_json<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &Value,
    ) -> Result<T, ClientError> {
        let resp = self
            .send(self.request(Method::PUT, path).json(body))
            .await?;
        resp.json()
            .await
            .map_err(|e| ClientError::Decode(e.to_string()))
    }

    pub async fn post_yaml<T: DeserializeOwned>(
        &self,
        path: &str,
        yaml: String,
    ) -> Result<T, ClientError> {
        let rb = self
            .request(Method::POST, path)
            .header(reqwest::header::CONTENT_TYPE, "application/yaml")
            .body(yaml);
        let resp = self.send(rb).await?;
        resp.json()
            .await
            .map_err(|e| ClientError::Decode(e.to_string()))
    }

    /// DELETE, reading the answer's JSON.
    pub(crate) async fn delete_json<T: DeserializeOwned>(
        &self,
        path: &str,
    ) -> Result<T, ClientError> {
        let resp = self.send(self.request(Method::DELETE, path)).await?;
        resp.json()
            .await
            .map_err(|e| ClientError::Decode(e.to_string()))
    }

    /// POST without a body (the rollout actions).
    pub(crate) async fn post<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        let resp = self.send(self.request(Method::POST, path)).await?;
        resp.json()
            .await
            .map_err(|e| ClientError::Decode(e.to_string()))
    }

    pub async fn rollout(&self, id: &str) -> Result<Rollout, ClientError> {
        self.get_json(&format!("/rollouts/{}", segment(id))).await
    }

    pub async fn delete(&self, path: &str) -> Result<(), ClientError> {
        self.send(self.request(Method::DELETE, path))
            .await
            .map(|_| ())
    }

    /// Upload an image file, streamed from disk.
    pub async fn upload_image(
        &self,
        file: &Path,
        platform: Option<&str>,
        version: Option<&str>,
    ) -> Result<ImageRecord, ClientError> {
        let name = file
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("image.bin")
            .to_string();
        let f = tokio::fs::File::open(file)
            .await
            .map_err(|source| ClientError::File {
                path: file.display().to_string(),
                source,
            })?;
        let len = f.metadata().await.map(|m| m.len()).ok();
        let stream = tokio_util::io::ReaderStream::with_capacity(f, 256 * 1024);
        let body = reqwest::Body::wrap_stream(stream);
        let part = match len {
            Some(len) => reqwest::multipart::Part::stream_with_length(body, len),
            None => reqwest::multipart::Part::stream(body),
        }
        .file_name(name);
        let mut form = reqwest::multipart::Form::new().part("file", part);
        if let Some(p) = platform {
            form = form.text("platform", p.to_string());
        }
        if let Some(v) = version {
            form = form.text("version", v.to_string());
        }
        let resp = self
            .send(self.request(Method::POST, "/images").multipart(form))
            .await?;
        resp.json()
            .await
            .map_err(|e| ClientError::Decode(e.to_string()))
    }

    pub async fn import_inventory(&self, file: &Path) -> Result<ImportResult, ClientError> {
        let text = tokio::fs::read_to_string(file)
            .await
            .map_err(|source| ClientError::File {
                path: file.display().to_string(),
                source,
            })?;
        self.post_yaml("/inventory/import", text).await
    }
}

/// Percent-encode a path segment (device and image names are restricted, but be safe).
pub fn segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
pub mod access;
pub mod configs;
pub mod follow;
pub mod golden;
pub mod notify;
pub mod rollout;
pub mod sync;
