//! OpenTelemetry: one span per token exchange, exported over OTLP/HTTP (protobuf) when the
//! configuration names a collector. Off by default; off, nothing is built and nothing is sent.
//!
//! The span is a child of the caller's W3C `traceparent` (the outbound filter passes on the one of
//! the request it exchanges for), so the STS's decision sits inside the agent's own trace. The
//! caller chooses that parent: it decides where a span is filed, never what the span says.

use std::borrow::Cow;
use std::time::{Duration, SystemTime};

use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::{Span, SpanKind, Status, Tracer, TracerProvider};
use opentelemetry::{Array, KeyValue, StringValue, Value};
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{BatchConfigBuilder, BatchSpanProcessor, SdkTracer, SdkTracerProvider};
use opentelemetry_sdk::Resource;

use crate::config::TelemetryConfig;
use crate::exchange::AuditRecord;

/// The span's name: what the STS did.
pub const EXCHANGE_SPAN: &str = "actorchain.token_exchange";

pub struct Telemetry {
    on: Option<(SdkTracerProvider, SdkTracer)>,
}

/// The one header a parent is read from.
struct Traceparent<'a>(Option<&'a str>);

impl Extractor for Traceparent<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.filter(|_| key == "traceparent")
    }
    fn keys(&self) -> Vec<&str> {
        vec!["traceparent"]
    }
}

fn text(s: &Option<String>) -> Value {
    Value::String(StringValue::from(s.clone().unwrap_or_default()))
}

impl Telemetry {
    pub fn off() -> Telemetry {
        Telemetry { on: None }
    }

    /// Spans batched to `cfg.otlp_endpoint`; an unreachable collector loses spans, never an exchange.
    pub fn start(cfg: &TelemetryConfig) -> Result<Telemetry, String> {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(cfg.otlp_endpoint.clone())
            .with_timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| format!("telemetry.otlp_endpoint: {e}"))?;
        let batches = BatchConfigBuilder::default().with_scheduled_delay(Duration::from_millis(cfg.export_delay_ms)).build();
        let provider = SdkTracerProvider::builder()
            .with_span_processor(BatchSpanProcessor::builder(exporter).with_batch_config(batches).build())
            .with_resource(Resource::builder_empty().with_service_name(cfg.service_name.clone()).build())
            .build();
        let tracer = provider.tracer("actorchain-sts");
        Ok(Telemetry { on: Some((provider, tracer)) })
    }

    pub fn enabled(&self) -> bool {
        self.on.is_some()
    }

    /// The span of one decided exchange, from `started` to now, under the caller's `traceparent`.
    pub fn exchange(&self, traceparent: Option<&str>, started: SystemTime, rec: &AuditRecord) {
        let Some((_, tracer)) = &self.on else { return };
        let parent = TraceContextPropagator::new().extract(&Traceparent(traceparent));
        let chain: Vec<StringValue> = rec.chain.iter().map(|a| StringValue::from(a.clone())).collect();
        let attributes = vec![
            KeyValue::new("actorchain.decision", rec.decision),
            KeyValue::new("actorchain.reason", rec.reason),
            KeyValue::new("actorchain.person", text(&rec.sub)),
            KeyValue::new("actorchain.person.issuer", text(&rec.sub_iss)),
            KeyValue::new("actorchain.agent", text(&rec.chain.last().cloned())),
            KeyValue::new("actorchain.chain", Value::Array(Array::String(chain))),
            KeyValue::new("actorchain.audience", text(&rec.audience)),
            KeyValue::new("actorchain.scope", text(&rec.scope)),
            KeyValue::new("actorchain.workload", text(&rec.workload)),
            KeyValue::new("actorchain.sid", text(&rec.sid)),
            KeyValue::new("actorchain.jti", text(&rec.jti)),
        ];
        let mut span = tracer
            .span_builder(EXCHANGE_SPAN)
            .with_kind(SpanKind::Server)
            .with_start_time(started)
            .with_attributes(attributes)
            .start_with_context(tracer, &parent);
        if rec.decision != "granted" {
            span.set_status(Status::Error { description: Cow::Borrowed(rec.reason) });
        }
        span.end();
    }

    /// Sends what is still batched; called once, when the STS stops.
    pub fn shutdown(&self) {
        if let Some((provider, _)) = &self.on {
            let _ = provider.shutdown();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::TraceContextExt;

    fn parent_of(traceparent: &str) -> Option<String> {
        let cx = TraceContextPropagator::new().extract(&Traceparent(Some(traceparent)));
        let sc = cx.span().span_context().clone();
        sc.is_valid().then(|| sc.span_id().to_string())
    }

    #[test]
    fn reads_only_a_well_formed_traceparent() {
        let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert_eq!(parent_of(tp).as_deref(), Some("00f067aa0ba902b7"));
        assert_eq!(parent_of("00-00000000000000000000000000000000-00f067aa0ba902b7-01"), None);
        assert_eq!(parent_of("garbage"), None);
    }
}
