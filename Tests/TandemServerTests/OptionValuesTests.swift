import Testing
import TandemServer

/// Issue 7: the values of `--doc-ttl` and `--redis-maxmemory`, and the range `--doc-ttl` must be in.
@Suite struct OptionValuesTests {
    @Test func docTTLMustBeZeroOrWellAboveTheReconcileInterval() throws {
        var config = ServerConfiguration(nodeID: "n", redisURL: "redis://127.0.0.1:6379")
        #expect(config.docTTLMs == 30 * 86_400_000)
        for ok: Int64 in [0, 60_000, 86_400_000] {
            config.docTTLMs = ok
            try config.validate()
        }
        for bad: Int64 in [1, 59_999, -1] {
            config.docTTLMs = bad
            #expect(throws: ConfigurationError.self, "\(bad)") { try config.validate() }
        }
        config.reconcileMs = 10_000
        config.docTTLMs = 60_000
        #expect(throws: ConfigurationError.self, "10 × --reconcile-ms") { try config.validate() }
    }

    @Test func durationsAndSizesParseWithUnitsAndRefuseOverflow() {
        #expect(OptionValues.durationMs("0") == 0)
        #expect(OptionValues.durationMs("30d") == 2_592_000_000)
        #expect(OptionValues.durationMs("12h") == 43_200_000)
        #expect(OptionValues.durationMs("15m") == 900_000)
        #expect(OptionValues.durationMs("90s") == 90_000)
        #expect(OptionValues.durationMs("250ms") == 250)
        for bad in ["", "30", "d", "-1d", "1.5h", "1w", "99999999999999999999d", "9223372036854775807d", " 1d"] {
            #expect(OptionValues.durationMs(bad) == nil, "\(bad)")
        }
        #expect(OptionValues.bytes("0") == 0)
        #expect(OptionValues.bytes("1048576") == 1_048_576)
        #expect(OptionValues.bytes("512MiB") == 512 << 20)
        #expect(OptionValues.bytes("512mb") == 512 << 20)
        #expect(OptionValues.bytes("2GiB") == 2 << 30)
        #expect(OptionValues.bytes("2g") == 2 << 30)
        #expect(OptionValues.bytes("64k") == 64 << 10)
        for bad in ["", "GiB", "-1", "1.5GiB", "1PiB", "17179869184TiB", "1 GiB"] {
            #expect(OptionValues.bytes(bad) == nil, "\(bad)")
        }
        #expect(OptionValues.describe(bytes: 3 << 29) == "1.5 GiB")
    }
}
