//! The command-line clients of the REST API (`fleetup inventory`, `image`, `device`, `run`):
//! thin wrappers that print what the service answers.

use std::path::Path;

use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde_json::Value;

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
    #[error("{status}: {message}")]
    Api {
        status: StatusCode,
        code: String,
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

/// A client of one service.
#[derive(Clone)]
pub struct Client {
    base: String,
    token: Option<String>,
    http: reqwest::Client,
}

impl Client {
    pub fn new(server: &str, token: Option<String>) -> Self {
        Self {
            base: server.trim_end_matches('/').to_string(),
            token,
            http: reqwest::Client::new(),
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

    pub fn url(&self, path: &str) -> String {
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
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        let code = body["error"]["code"].as_str().unwrap_or("").to_string();
        let mut message = body["error"]["message"]
            .as_str()
            .unwrap_or("the service gave no reason")
            .to_string();
        if status == StatusCode::UNAUTHORIZED {
            message.push_str(" (pass --token or set FLEETUP_API_TOKEN)");
        }
        Err(ClientError::Api {
            status,
            code,
            message,
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
    ) -> Result<Value, ClientError> {
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

    pub async fn import_inventory(&self, file: &Path) -> Result<Value, ClientError> {
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
pub mod follow;
