# One image for every actorchain process in docker-compose.yml: the STS, the demo's toy apps and
# scenario, and the filter (copied out for the Envoy containers, which run the official image).
FROM rust:1.95-bookworm AS build
WORKDIR /src
RUN rustup target add wasm32-wasip1
COPY . .
RUN cargo build --release -p actorchain-sts -p actorchain-demo \
 && cargo build --release --target wasm32-wasip1 -p actorchain

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/actorchain-sts /src/target/release/actorchain-demo /usr/local/bin/
COPY --from=build /src/target/wasm32-wasip1/release/actorchain.wasm /usr/local/lib/actorchain/actorchain.wasm
COPY envoy/sidecar.yaml /usr/local/lib/actorchain/sidecar.yaml
USER 65532
