//! What one interval sends: counters as deltas against the previous call,
//! gauges as they are, and one distribution line per buffered span.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::atomic::Ordering;

use cadence::prelude::*;

use super::encode::{label_tags, metric_key, send, tag_value, FloatCount, SPAN_METRIC};
use super::exporter::StatsdExporter;
use crate::metrics::{Family, Kind, Value};
use crate::model::spans::{FlowSpan, SpanSide};

/// Last sent counter values: family name -> labels -> value.
///
/// Keyed by the family's `&'static str` name and then by the labels, so a
/// lookup needs no allocation (`Vec` borrows as a slice) and an existing
/// key is moved, not cloned, into the next call's map.
pub(super) type Previous = HashMap<&'static str, HashMap<Vec<(&'static str, String)>, f64>>;

impl StatsdExporter {
    /// Sends one interval of `families` and returns how many lines reached
    /// the socket.
    ///
    /// * Counters go out as the increase since the previous call (`|c`).
    ///   The first time a series is seen its full value is sent: the agent
    ///   counts from zero when it starts, so the whole value happened since
    ///   then. A value below the previous one is a reset (the series was
    ///   recreated) and is sent in full too. Series whose increase is 0 are
    ///   skipped: they carry no information and cost packets.
    /// * Gauges go out every call (`|g`), unchanged or not: DogStatsD keeps
    ///   a gauge only for the flush interval it arrives in.
    /// * Histogram families are skipped (see the `statsd` module docs).
    ///
    /// Non-finite values are skipped (a counter keeps its previous value).
    /// Only series present in this call are remembered, so memory follows
    /// the current series set; a series that is missing for one call and
    /// then returns is new again and sends its full value.
    pub fn export(&mut self, families: &[Family]) -> usize {
        let sent_before = self.delivery.sent.load(Ordering::Relaxed);
        let mut previous = std::mem::take(&mut self.previous);
        let mut next = Previous::with_capacity(previous.len());

        for family in families {
            let key = metric_key(family.name);
            match family.kind {
                Kind::Counter => {
                    let mut last = previous.get_mut(family.name);
                    let current = next.entry(family.name).or_default();
                    for series in &family.series {
                        let Value::Counter(value) = series.value else {
                            continue;
                        };
                        let labels = series.labels.as_slice();
                        if current.contains_key(labels) {
                            // The same series twice in one call: sending it
                            // again would count its increase twice.
                            continue;
                        }
                        let (labels_owned, last_value) =
                            match last.as_mut().and_then(|m| m.remove_entry(labels)) {
                                Some((owned, v)) => (owned, Some(v)),
                                None => (series.labels.clone(), None),
                            };
                        if !value.is_finite() {
                            if let Some(v) = last_value {
                                current.insert(labels_owned, v);
                            }
                            continue;
                        }
                        current.insert(labels_owned, value);
                        let delta = match last_value {
                            Some(last) if value >= last => value - last,
                            _ => value,
                        };
                        if delta == 0.0 {
                            continue;
                        }
                        let tags = label_tags(labels);
                        let line = self.client.count_with_tags(&key, FloatCount(delta));
                        let ok = send(line, &tags, &self.global_tags);
                        self.note(ok);
                    }
                }
                Kind::Gauge => {
                    for series in &family.series {
                        let Value::Gauge(value) = series.value else {
                            continue;
                        };
                        if !value.is_finite() {
                            continue;
                        }
                        let tags = label_tags(&series.labels);
                        let line = self.client.gauge_with_tags(&key, value);
                        let ok = send(line, &tags, &self.global_tags);
                        self.note(ok);
                    }
                }
                Kind::Histogram => {}
            }
        }
        // Families without counter series leave empty maps; drop them so
        // `previous` holds only live series.
        next.retain(|_, m| !m.is_empty());
        self.previous = next;
        self.flush();
        self.lines_sent_since(sent_before)
    }

    /// Sends each span's duration as a distribution line (`|d`): metric
    /// `<prefix>.tx_duration_seconds`, value in seconds, tags `process`,
    /// `proto`, `dport` and `dst_ip` (the server end, IPv4-mapped IPv6
    /// shown as IPv4 like the Prometheus labels), `side`
    /// (`client`/`server`) and, when the process resolved the server's
    /// address, `dst_name`. A `rate` below 1 (the spans sent are that
    /// fraction of those seen) goes on every line as `|@rate`. Returns how
    /// many lines reached the socket.
    pub fn observe_spans(&mut self, spans: &[FlowSpan], rate: f64) -> usize {
        let sent_before = self.delivery.sent.load(Ordering::Relaxed);
        for span in spans {
            let server = span.server();
            let dport = server.port().to_string();
            let dst_ip = server.ip().to_canonical().to_string();
            let side = match span.side {
                SpanSide::Client => "client",
                SpanSide::Server => "server",
            };
            let mut tags: Vec<(Cow<'_, str>, Cow<'_, str>)> = vec![
                ("process".into(), tag_value(&span.process)),
                ("proto".into(), tag_value(span.proto)),
                ("dport".into(), dport.into()),
                ("dst_ip".into(), dst_ip.into()),
                ("side".into(), side.into()),
            ];
            if !span.dst_name.is_empty() {
                tags.push(("dst_name".into(), tag_value(&span.dst_name)));
            }
            let mut line = self
                .client
                .distribution_with_tags(SPAN_METRIC, span.duration_seconds());
            if rate < 1.0 {
                line = line.with_sampling_rate(rate);
            }
            let ok = send(line, &tags, &self.global_tags);
            self.note(ok);
        }
        self.flush();
        self.lines_sent_since(sent_before)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::statsd::test_support::*;
    use crate::metrics::Histogram;
    use std::collections::BTreeMap;

    #[test]
    fn counters_send_deltas_over_three_calls() {
        let (rx, mut exp) = udp_pair(|_| {});

        let n = exp.export(&[counter(
            "netagent_connect",
            &[("curl", 5.0), ("nginx", 2.0)],
        )]);
        let lines = parse_all(&recv_lines(&rx, n));
        assert_eq!(
            by_series(&lines),
            BTreeMap::from([
                ("netagent.connect|comm:curl".into(), (5.0, "c".into())),
                ("netagent.connect|comm:nginx".into(), (2.0, "c".into())),
            ]),
            "first call sends full values"
        );

        let n = exp.export(&[counter(
            "netagent_connect",
            &[("curl", 8.0), ("nginx", 2.0)],
        )]);
        let lines = parse_all(&recv_lines(&rx, n));
        assert_eq!(
            by_series(&lines),
            BTreeMap::from([("netagent.connect|comm:curl".into(), (3.0, "c".into()))]),
            "second call: delta, unchanged series skipped"
        );

        let n = exp.export(&[counter(
            "netagent_connect",
            &[("curl", 8.0), ("nginx", 2.0)],
        )]);
        assert_eq!(n, 0, "zero deltas are skipped");
        assert_quiet(&rx);
        assert_eq!(exp.errors(), 0);
    }

    #[test]
    fn counter_state_follows_current_series() {
        let (rx, mut exp) = udp_pair(|_| {});
        let n = exp.export(&[counter("netagent_connect", &[("a", 5.0), ("b", 1.0)])]);
        recv_lines(&rx, n);
        assert_eq!(exp.previous["netagent_connect"].len(), 2);

        // `b` is gone: forgotten. `a` reset to a lower value: sent in full.
        let n = exp.export(&[counter("netagent_connect", &[("a", 2.0)])]);
        let lines = parse_all(&recv_lines(&rx, n));
        assert_eq!(
            by_series(&lines),
            BTreeMap::from([("netagent.connect|comm:a".into(), (2.0, "c".into()))])
        );
        assert_eq!(exp.previous["netagent_connect"].len(), 1);

        // `b` returns: new again, full value. Fractional counters stay floats.
        let n = exp.export(&[
            counter("netagent_connect", &[("a", 2.0), ("b", 1.0)]),
            counter("process_cpu_seconds", &[("x", 1.25)]),
        ]);
        let lines = parse_all(&recv_lines(&rx, n));
        assert_eq!(
            by_series(&lines),
            BTreeMap::from([
                ("netagent.connect|comm:b".into(), (1.0, "c".into())),
                (
                    "netagent.process_cpu_seconds|comm:x".into(),
                    (1.25, "c".into())
                ),
            ])
        );

        // No families at all: nothing remembered.
        assert_eq!(exp.export(&[]), 0);
        assert!(exp.previous.is_empty());
    }

    #[test]
    fn duplicate_series_and_non_finite_values_are_skipped() {
        let (rx, mut exp) = udp_pair(|_| {});
        let n = exp.export(&[
            counter("netagent_connect", &[("a", 5.0), ("a", 5.0)]),
            gauge("netagent_open", &[("a", f64::NAN), ("b", f64::INFINITY)]),
        ]);
        assert_eq!(n, 1);
        let lines = parse_all(&recv_lines(&rx, n));
        assert_eq!(lines[0].value, 5.0);
        assert_quiet(&rx);
    }

    #[test]
    fn gauges_are_sent_every_call_and_histograms_never() {
        let (rx, mut exp) = udp_pair(|_| {});
        let mut hist = Family::ad_hoc("netagent_rtt_seconds", "help", Kind::Histogram);
        hist.push(
            vec![("comm", "a".into())],
            Value::Histogram(Histogram {
                bounds: &[1.0],
                buckets: vec![1, 1],
                sum: 1.5,
            }),
        );
        let families = [
            gauge("netagent_sockets_open", &[("a", 12.0), ("b", -0.25)]),
            hist,
        ];
        for _ in 0..2 {
            let n = exp.export(&families);
            assert_eq!(n, 2);
            let lines = parse_all(&recv_lines(&rx, n));
            assert_eq!(
                by_series(&lines),
                BTreeMap::from([
                    ("netagent.sockets_open|comm:a".into(), (12.0, "g".into())),
                    ("netagent.sockets_open|comm:b".into(), (-0.25, "g".into())),
                ])
            );
        }
    }

    #[test]
    fn labels_and_global_tags() {
        let (rx, mut exp) = udp_pair(|cfg| {
            cfg.prefix = "custom.".into();
            cfg.tags = vec!["env:prod".into(), "  ".into(), "team:a,b".into()];
        });
        let mut f = Family::ad_hoc("netagent_bytes", "help", Kind::Counter);
        f.push(
            vec![
                ("comm", "cu,rl|x#y\nz".into()),
                ("container", String::new()),
            ],
            Value::Counter(7.0),
        );
        let n = exp.export(&[f]);
        let datagrams = recv_lines(&rx, n);
        assert_eq!(
            datagrams,
            ["custom.bytes:7|c|#comm:cu_rl_x_y_z,container:,env:prod,team:a_b\n"]
        );
        parse_all(&datagrams);
    }

    #[test]
    fn spans_become_distributions() {
        let (rx, mut exp) = udp_pair(|cfg| cfg.tags = vec!["env:prod".into()]);
        let spans = [
            span(SpanSide::Client, "10.0.0.1:40000", "10.0.0.2:80"),
            span(
                SpanSide::Server,
                "[::ffff:10.0.0.2]:80",
                "[::ffff:10.0.0.1]:40000",
            ),
            span(SpanSide::Client, "[fd00::1]:40000", "[fd00::2]:443"),
            FlowSpan {
                dst_name: "api.test".into(),
                ..span(SpanSide::Client, "10.0.0.1:40001", "10.0.0.3:80")
            },
        ];
        let n = exp.observe_spans(&spans, 1.0);
        assert_eq!(n, 4);
        let lines = parse_all(&recv_lines(&rx, n));
        let tags: Vec<String> = lines.iter().map(|l| l.tags.join(",")).collect();
        assert_eq!(
            tags,
            [
                "process:my_app,proto:tcp,dport:80,dst_ip:10.0.0.2,side:client,env:prod",
                "process:my_app,proto:tcp,dport:80,dst_ip:10.0.0.2,side:server,env:prod",
                "process:my_app,proto:tcp,dport:443,dst_ip:fd00::2,side:client,env:prod",
                "process:my_app,proto:tcp,dport:80,dst_ip:10.0.0.3,side:client,dst_name:api.test,env:prod",
            ]
        );
        for l in &lines {
            assert_eq!(l.name, "netagent.tx_duration_seconds");
            assert_eq!(l.kind, "d");
            assert!((l.value - 0.0025).abs() < 1e-12);
        }
    }
}
