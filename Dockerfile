# netagent container image (multi-stage). Build from the repository root
# (BuildKit: Docker 23+ by default, Docker 20.10 with DOCKER_BUILDKIT=1):
#
#   docker build -t netagent:0.1.0 .
#
# Build arguments (docs/DEPLOYMENT.md, "Container image"):
#
#   BASE_IMAGE     runtime base; default debian:bookworm-slim. Any Debian 12
#                  based image works; one that already has ca-certificates and
#                  libcap2-bin (setcap) needs no package download, e.g. a base
#                  made locally with scripts/image-base.sh (no registry needed).
#   BUILDER_IMAGE  Rust toolchain of the build stage; default rust:1.95-bookworm.
#   AGENT_SOURCE   build (default): compile the agent in BUILDER_IMAGE;
#                  prebuilt: take an agent built on the host instead, AGENT_BINARY
#                  (a path in the build context; default target/release/netagent,
#                  after `cargo build --release --locked`). BUILDER_IMAGE is then
#                  not used at all.
#
# Run it like the DaemonSet (deploy/kubernetes/daemonset.yaml) does: the host's
# network and PID namespaces, the four capabilities and nothing else, read-only
# root file system, the host's cgroup root and BTF mounted read-only:
#
#   docker run -d --name netagent --network host --pid host --user 10001:10001 \
#     --cap-drop ALL --cap-add BPF --cap-add PERFMON --cap-add NET_ADMIN --cap-add SYS_RESOURCE \
#     --read-only -v /sys/fs/cgroup:/sys/fs/cgroup:ro -v /sys/kernel/btf:/sys/kernel/btf:ro \
#     netagent:0.1.0
#
# That needs Docker 23 or later: Docker 20.10 does not know CAP_BPF and
# CAP_PERFMON (docs/DEPLOYMENT.md shows containerd's ctr instead).
# CAP_SYS_RESOURCE is only needed on kernels before 5.11 (RLIMIT_MEMLOCK);
# CAP_BPF and CAP_PERFMON need Linux 5.8+ (older kernels: CAP_SYS_ADMIN).
# The binary carries these capabilities as file capabilities (permitted, not
# effective: the agent makes them effective itself, so it also starts where
# the runtime withholds one of them), and runs as the unprivileged user below;
# do not set no-new-privileges (it would ignore them). Built and run by
# tests/deploy/image.rs; keep it in step with scripts/setup.sh.

ARG BUILDER_IMAGE=rust:1.95-bookworm
ARG BASE_IMAGE=debian:bookworm-slim
ARG AGENT_SOURCE=build

# ------------------------------------------------------- agent, from source
FROM ${BUILDER_IMAGE} AS agent-build
# clang compiles bpf/*.c to BPF objects (build.rs); libbpf-dev has
# bpf_helpers.h; linux-libc-dev the uapi headers.
RUN apt-get update \
 && apt-get install -y --no-install-recommends clang llvm libbpf-dev linux-libc-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# tools/ comes along as a workspace member (cargo reads its manifest) but is
# not built: the image holds the agent alone.
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p netagent --bin netagent \
 && install -D -m 0755 target/release/netagent /out/netagent

# ------------------------------------------------ agent, built on the host
FROM scratch AS agent-prebuilt
ARG AGENT_BINARY=target/release/netagent
COPY ${AGENT_BINARY} /out/netagent

FROM agent-${AGENT_SOURCE} AS agent

# ---------------------------------------------------------------- runtime
FROM ${BASE_IMAGE}
COPY config.example.yaml /etc/netagent/config.yaml
# The agent is installed and given its file capabilities in one step: a
# COPY followed by setcap would store the binary twice (setcap rewrites the
# file into a layer of its own). setcap (libcap2-bin) is used once and
# removed again; ca-certificates stay for otel.endpoint over TLS
# (otel.insecure: false). Nothing is downloaded when the base already has
# both.
RUN --mount=type=bind,from=agent,source=/out,target=/run/agent \
    set -eu \
 && install -m 0755 /run/agent/netagent /usr/bin/netagent \
 && if ! command -v setcap >/dev/null || [ ! -s /etc/ssl/certs/ca-certificates.crt ]; then \
      apt-get update \
      && apt-get install -y --no-install-recommends ca-certificates libcap2-bin; \
    fi \
 && setcap cap_bpf,cap_perfmon,cap_net_admin,cap_sys_resource+p /usr/bin/netagent \
 && apt-get purge -y --auto-remove libcap2-bin \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 netagent \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin netagent
USER 10001:10001
EXPOSE 9102
ENTRYPOINT ["/usr/bin/netagent"]
CMD ["--config", "/etc/netagent/config.yaml"]
