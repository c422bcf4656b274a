# The downloader image: one static binary FROM scratch, run as a non-root user.
#
#   docker build -t downloader .          # builds the binary in a Rust image, then the image
#   scripts/image                         # the same image from a binary built on this host
#
# The `prebuilt` stage comes before the Rust stage on purpose: `docker build --target prebuilt`
# (scripts/image, and CI, which has no registry to pull a Rust image from) stops there, and
# BuildKit (Docker's builder since 23.0) skips it for the default target. The legacy builder
# builds every stage: with it, run scripts/image first, or build with --target prebuilt.
ARG RUST_IMAGE=docker.io/library/rust:1.95-bookworm

FROM scratch AS base
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="downloader" \
      org.opencontainers.image.description="HTTP(S) jobs for API tests and monitors, with mutual TLS that just works" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.source="https://example.invalid/downloader" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY deploy/docker/etc/passwd deploy/docker/etc/group deploy/docker/etc/nsswitch.conf /etc/
# Inside a container the job API listens on every address, on 8819 or the reference's `port`;
# the generated identity and credentials go to the /data volume, so the root file system can be
# read-only; /certs is the certificate directory jobs name keystores in.
ENV DOWNLOADER_LISTEN=0.0.0.0 \
    DOWNLOADER_DATA_DIR=/data \
    SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
EXPOSE 8819
USER 65532:65532
HEALTHCHECK --interval=5s --timeout=5s --start-period=5s --retries=3 \
  CMD ["/usr/local/bin/downloader", "healthcheck", "--quiet"]
ENTRYPOINT ["/usr/local/bin/downloader"]
CMD ["serve"]

FROM base AS prebuilt
COPY target/image/rootfs/usr/ /usr/
COPY target/image/rootfs/etc/ssl/ /etc/ssl/
COPY target/image/rootfs/certs/ /certs/
COPY --chown=65532:65532 target/image/rootfs/data/ /data/
VOLUME ["/data"]

FROM ${RUST_IMAGE} AS build
WORKDIR /src
COPY . .
RUN deploy/docker/build-static /out

FROM base
COPY --from=build /out/usr/ /usr/
COPY --from=build /out/etc/ssl/ /etc/ssl/
COPY --from=build /out/certs/ /certs/
COPY --from=build --chown=65532:65532 /out/data/ /data/
VOLUME ["/data"]
