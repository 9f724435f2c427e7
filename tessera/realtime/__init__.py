"""Real time: events in through a collector, a stream, per-visitor session state, triggers.

    storefront (tessera.js, a shop's Segment tracking)
        │  POST /v1/events (Segment spec: track, identify, page)
        ▼
    collector ──► stream (Redis Streams, behind tessera.realtime.stream.EventStream)
                    │ consumer groups: each reads every event, acknowledges after processing
                    ├─► state worker: session state with TTLs (tessera.realtime.state), and
                    │   micro-batch files into the landing folder (the batch graph's events)
                    └─► trigger worker: idle carts, dwell, visits without purchase → outbox

docs/realtime.md has the whole design, the keys and what each figure measured.
"""
