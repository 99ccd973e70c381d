# syntax=docker/dockerfile:1
#
# fleetup in a container: `docker compose up -d` (see docker-compose.yml and
# docs/operations.md#containers).
#
#   docker build -t fleetup .
#   docker run -d --name fleetup -v fleetup-data:/var/lib/fleetup \
#     -p 8080:8080 -p 69:69/udp -p 21:21 -p 30000-30009:30000-30009 \
#     -e FLEETUP_FTP_PUBLIC_HOST=10.0.0.5 fleetup

# ---- build ------------------------------------------------------------------------------
FROM rust:1-bookworm AS build
WORKDIR /src
# Only what the binary is built from: the dashboard (web/), the migrations, the lab's
# personas and the demo's playbook are compiled into it (tests/it/docs.rs checks this list).
COPY Cargo.toml Cargo.lock build.rs ./
COPY src ./src
COPY migrations ./migrations
COPY web ./web
COPY personas ./personas
COPY playbooks ./playbooks
# The caches keep crates.io downloads and compiled dependencies between builds; the binary is
# copied out of the cached target directory so that it lands in the image layer.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked \
    && install -m 0755 target/release/fleetup /usr/local/bin/fleetup

# ---- run --------------------------------------------------------------------------------
FROM debian:bookworm-slim
COPY --from=build /usr/local/bin/fleetup /usr/local/bin/fleetup
COPY inventory /usr/share/fleetup/inventory
COPY playbooks /usr/share/fleetup/playbooks
# Run as an unprivileged user. TFTP (69) and FTP (21) are privileged ports: the binary gets
# CAP_NET_BIND_SERVICE as a file capability instead of running as root. (Recent Docker also
# lets any user bind low ports inside a container; the capability makes it work everywhere.
# A container started with `--cap-drop ALL` must add it back: `--cap-add NET_BIND_SERVICE`.)
RUN apt-get update \
    && apt-get install -y --no-install-recommends libcap2-bin \
    && setcap cap_net_bind_service=+ep /usr/local/bin/fleetup \
    && apt-get purge -y libcap2-bin && apt-get autoremove -y \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --user-group --home-dir /var/lib/fleetup \
       --shell /usr/sbin/nologin fleetup \
    && mkdir -p /var/lib/fleetup /var/lib/fleetup-lab /var/lib/fleetup-agent \
       /var/lib/fleetup-agent-token \
    && chown fleetup:fleetup /var/lib/fleetup /var/lib/fleetup-lab /var/lib/fleetup-agent \
       /var/lib/fleetup-agent-token \
    && chmod 0700 /var/lib/fleetup /var/lib/fleetup-agent-token \
    && mkdir -p /srv/fleetup && ln -s /var/lib/fleetup /srv/fleetup/fleetup-data
USER fleetup
# Client subcommands run here (`docker compose exec fleetup fleetup image list`) find the
# generated token where they look by default, ./fleetup-data/api-token.
WORKDIR /srv/fleetup
# Database, images, generated API token and FTP password.
VOLUME /var/lib/fleetup
# HTTP API and dashboard, TFTP, FTP control, FTP passive data (--ftp-passive-ports below),
# HTTP image server.
EXPOSE 8080 69/udp 21 30000-30009 80
ENTRYPOINT ["fleetup"]
CMD ["serve", "--data-dir", "/var/lib/fleetup", "--http", "0.0.0.0:8080", "--ftp-passive-ports", "30000-30009"]
