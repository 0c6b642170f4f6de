"""The writer's span conversion (``pipeline/_inbox.span_data``): the SDK's own span
classes are read through their fields, any other span type through the public
properties, and both give the same span form."""

from __future__ import annotations

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Status, StatusCode

from decisiontrace.pipeline._inbox import span_data


class OtherSpan(ReadableSpan):
    """A span type of someone else's: only its public properties are known."""


def public_copy(span: ReadableSpan) -> OtherSpan:
    return OtherSpan(
        name=span.name,
        context=span.context,
        parent=span.parent,
        resource=span.resource,
        attributes=dict(span.attributes or {}),
        events=span.events,
        kind=span.kind,
        status=span.status,
        start_time=span.start_time,
        end_time=span.end_time,
    )


def test_sdk_spans_and_other_spans_convert_alike() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "svc"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span("run", attributes={"a": 1, "b": "x"}) as run:
        run.add_event("problem", {"severity": "warning"}, timestamp=123)
        with tracer.start_as_current_span("decision", attributes={"c": (1, 2)}) as decision:
            decision.set_status(Status(StatusCode.ERROR, "failed"))
        tracer.start_span("bare").end()
    spans = exporter.get_finished_spans()
    assert len(spans) == 3
    for span in spans:
        fast, public = span_data(span), span_data(public_copy(span))
        assert fast == public
    decision_data, bare_data, run_data = (span_data(span) for span in spans)
    assert bare_data.attributes == {} and bare_data.events == ()
    assert run_data.events[0].attributes == {"severity": "warning"}
    assert run_data.events[0].time_ns == 123
    assert decision_data.events == ()
    assert decision_data.error and not run_data.error
    assert decision_data.parent_id == run_data.span_id
    assert run_data.service_name == "svc"
    assert run_data.attributes == {"a": 1, "b": "x"}
    assert run_data.end_ns is not None and run_data.start_ns < run_data.end_ns
