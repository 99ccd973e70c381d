//! The one way fleetup (and its tests and benches) builds an HTTP client.
//!
//! reqwest's TLS is rustls with no crypto provider of its own: the process's default provider,
//! ring as in the rest of the tree (no C/cmake build of aws-lc), is installed here before any
//! client exists. `reqwest::Client::new` and `reqwest::Client::builder` are disallowed by
//! clippy.toml, so no client can be built without it (one would panic at its first https use).

/// A client builder with the TLS crypto provider installed.
pub fn builder() -> reqwest::ClientBuilder {
    // Installed once per process; later calls find it there (an `Err` only says so).
    let _ = tokio_rustls::rustls::crypto::ring::default_provider().install_default();
    #[allow(clippy::disallowed_methods)]
    reqwest::Client::builder()
}

/// A client with reqwest's defaults.
pub fn client() -> reqwest::Client {
    // A default builder fails only when the TLS backend cannot start: with the provider
    // installed above and the system's roots missing, it still builds (and every https
    // request then fails with its own error).
    builder()
        .build()
        .unwrap_or_else(|e| panic!("cannot build an HTTP client: {e}"))
}

/// An error and its sources on one line (`error sending request: connection refused`).
pub(crate) fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn clients_build_after_the_provider_is_installed() {
        let _ = super::client();
        assert!(tokio_rustls::rustls::crypto::CryptoProvider::get_default().is_some());
    }
}
