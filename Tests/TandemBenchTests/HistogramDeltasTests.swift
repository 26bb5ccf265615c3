import Testing

@testable import tandem_bench

/// The node's histograms over a window, from two scrapes of its exposition: quantiles as Prometheus's
/// `histogram_quantile` computes them, on the buckets' changes only.
@Suite("histogramDeltas: a node histogram's quantiles over the window")
struct HistogramDeltasTests {
    @Test func quantilesAreInterpolatedWithinTheBucketsOfTheWindowOnly() throws {
        // Before the window: 100 fast observations that must not count.
        let first: [String: Double] = [
            #"tandem_sync_push_seconds_bucket{le="0.01"}"#: 100,
            #"tandem_sync_push_seconds_bucket{le="0.1"}"#: 100,
            #"tandem_sync_push_seconds_bucket{le="1.0"}"#: 100,
            #"tandem_sync_push_seconds_bucket{le="+Inf"}"#: 100,
        ]
        // In the window: 50 under 10 ms, 40 in 10–100 ms, 10 in 100 ms–1 s.
        let last: [String: Double] = [
            #"tandem_sync_push_seconds_bucket{le="0.01"}"#: 150,
            #"tandem_sync_push_seconds_bucket{le="0.1"}"#: 190,
            #"tandem_sync_push_seconds_bucket{le="1.0"}"#: 200,
            #"tandem_sync_push_seconds_bucket{le="+Inf"}"#: 200,
            "tandem_sync_push_seconds_count": 200,
        ]
        let h = try #require(histogramDeltas(first, last)["tandem_sync_push_seconds"])
        #expect(h.count == 100)
        #expect(abs(h.p50 - 10) < 1e-9)  // the top of the first bucket, in ms
        #expect(abs(h.p90 - 100) < 1e-9)
        #expect(abs(h.p99 - (100 + 900 * 0.9)) < 1e-9)  // 9 of the last bucket's 10
    }

    @Test func otherLabelsKeepTheirSeriesApartAndTheInfiniteBucketGivesTheLastBound() throws {
        let last: [String: Double] = [
            #"tandem_sync_push_stage_seconds_bucket{stage="commit",le="0.5"}"#: 1,
            #"tandem_sync_push_stage_seconds_bucket{stage="commit",le="+Inf"}"#: 10,
            #"tandem_sync_push_stage_seconds_bucket{stage="queue",le="0.5"}"#: 4,
            #"tandem_sync_push_stage_seconds_bucket{stage="queue",le="+Inf"}"#: 4,
            #"tandem_sync_batch_size_bucket{le="8"}"#: 3,
            #"tandem_sync_batch_size_bucket{le="+Inf"}"#: 3,
        ]
        let all = histogramDeltas([:], last)
        #expect(all[#"tandem_sync_push_stage_seconds{stage="commit"}"#]?.p99 == 500)  // past 0.5 s: its bound
        #expect(all[#"tandem_sync_push_stage_seconds{stage="queue"}"#]?.p50 == 250)
        #expect(all["tandem_sync_batch_size"]?.p50 == 4)  // not a duration: its own unit
        #expect(histogramDeltas(last, last).isEmpty, "nothing observed in the window")
    }
}
