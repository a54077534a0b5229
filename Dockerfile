# syntax=docker/dockerfile:1
#
# netagent container image (multi-stage). Build from the repository root:
#
#   docker build -t netagent:0.1.0 .
#
# Run it on the host's network and PID namespaces with the BPF capabilities
# and the host's cgroup v2 and BTF mounted read-only:
#
#   docker run -d --name netagent --network host --pid host --cgroupns host \
#     --cap-drop ALL --cap-add BPF --cap-add PERFMON --cap-add NET_ADMIN --cap-add SYS_RESOURCE \
#     -v /sys/fs/cgroup:/sys/fs/cgroup:ro -v /sys/kernel/btf:/sys/kernel/btf:ro \
#     netagent:0.1.0
#
# CAP_SYS_RESOURCE is only needed on kernels before 5.11 (RLIMIT_MEMLOCK);
# CAP_BPF and CAP_PERFMON need Linux 5.8+ (older kernels: CAP_SYS_ADMIN).
# The binary carries these capabilities as file capabilities, so it runs as
# the unprivileged user below; do not set no-new-privileges (it would
# ignore them). See docs/DEPLOYMENT.md. This file is not built in CI (no
# container engine there); keep it in step with scripts/setup.sh.

# ---------------------------------------------------------------- builder
FROM rust:1.95-bookworm AS builder
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
 && install -m 0755 target/release/netagent /usr/local/bin/netagent

# ---------------------------------------------------------------- runtime
FROM debian:bookworm-slim
# setcap (libcap2-bin) is used once and removed again; ca-certificates stay
# for otel.endpoint over TLS (otel.insecure: false).
COPY --from=builder /usr/local/bin/netagent /usr/bin/netagent
COPY config.example.yaml /etc/netagent/config.yaml
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates libcap2-bin \
 && setcap cap_bpf,cap_perfmon,cap_net_admin,cap_sys_resource+ep /usr/bin/netagent \
 && apt-get purge -y --auto-remove libcap2-bin \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 netagent \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin netagent
USER 10001:10001
EXPOSE 9102
ENTRYPOINT ["/usr/bin/netagent"]
CMD ["--config", "/etc/netagent/config.yaml"]
