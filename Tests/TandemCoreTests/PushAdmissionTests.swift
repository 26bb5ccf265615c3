import Foundation
import Testing
@testable import TandemCore

/// Admission by waiting time, simulated: bursts of pushes at several times a doc's capacity against a
/// Redis whose batches take S(k) = roundTrip + (k − 1) × perPush.
///
/// When the pipeline's model matches the service time exactly, no accepted push waits longer than
/// `maxPushWaitNanos` plus one batch (the batch it lands in may fill up with later arrivals, which the
/// estimate at admission could not know), the pipeline keeps a batch in Redis whenever pushes wait
/// (it commits at capacity), and what it refuses carries a `retryAfterMs` that grows with the backlog.
/// With wrong starting estimates and noisy service times, the model learns and the bound holds after a
/// warm-up, with the noise as slack.
@Suite struct PushAdmissionTests {
    struct Simulation {
        var pipeline: PushPipeline<Int>
        var random: SplitMix64
        let roundTrip: Double
        let perPush: Double
        let noise: Double
        var now: UInt64 = 1_000_000_000
        var inRedis: (id: UInt64, size: Int, replyAt: UInt64)?
        var arrivals: [JSONValue: UInt64] = [:]
        var waits: [(arrival: UInt64, wait: UInt64)] = []
        var refusals: [(backlog: Int, retryAfterMs: UInt64)] = []
        var idleWhileQueued = 0
        var nextID = 0
        /// What the model does not see: each result goes out up to this long after its commit is delivered
        /// (on a saturated node, the answer's turn on the loop, the socket), uniformly.
        var unseenNanos = 0.0
        /// The loop's admission margin, learned from the answers (nil: none, as before the margin).
        var loop: LoopLoad?
        var nextProbe: UInt64 = 0

        init(seed: UInt64, roundTrip: Double, perPush: Double, priors: (Double, Double), noise: Double, maxBatch: Int) {
            var settings = PushPipelineSettings(nodeID: "me")
            settings.maxBatchPushes = maxBatch
            // (This Redis runs one batch at a time, S(k) each: the model admission is built on.)
            settings.maxBatchesInFlight = 1
            settings.maxQueuedPushes = 1_000_000
            settings.maxPushWaitNanos = 250_000_000
            settings.initialRoundTripNanos = UInt64(priors.0)
            settings.initialPerPushNanos = UInt64(priors.1)
            pipeline = PushPipeline(settings: settings, randomSeed: seed)
            random = SplitMix64(seed: seed)
            self.roundTrip = roundTrip
            self.perPush = perPush
            self.noise = noise
            _ = pipeline.load(DocReplica(), retainedFrom: 1, now: now)
            _ = pipeline.attach(0, since: 0, now: now)
        }

        mutating func uniform() -> Double { Double(random.next() >> 11) / Double(1 << 53) }

        mutating func handle(_ actions: [PushAction<Int>]) {
            for action in actions {
                switch action {
                case .commit(let batch):
                    let exact = roundTrip + Double(batch.commits.count - 1) * perPush
                    let took = exact * (1 + noise * (2 * uniform() - 1))
                    inRedis = (batch.id, batch.commits.count, now + UInt64(took))
                case .deliver(_, _, let result?):
                    let arrival = arrivals.removeValue(forKey: result.pushID)!
                    let answered = now + UInt64(unseenNanos * uniform())
                    waits.append((arrival, answered - arrival))
                    loop?.answered(inDocNanos: answered - arrival, estimatedNanos: result.estimatedNanos ?? 0)
                case .answer(let reply):
                    guard case .error(.unavailable, _, let retryAfterMs?) = reply.answer else {
                        Issue.record("unexpected answer \(reply.answer)")
                        continue
                    }
                    arrivals.removeValue(forKey: reply.pushID)
                    refusals.append((pipeline.queuedCount, retryAfterMs))
                default:
                    break
                }
            }
        }

        /// Bursts at 1–4× capacity separated by quiet spells, for `duration`.
        mutating func run(duration: UInt64) {
            let capacity = Double(pipeline.settings.maxBatchPushes) / ((roundTrip + Double(pipeline.settings.maxBatchPushes - 1) * perPush) / 1e9)
            let end = now + duration
            var rate = 0.0
            var phaseEnd = now
            var nextArrival = now
            while now < end || inRedis != nil {
                // The shard's probe, every 20 ms, on time (it moves the margin once per window).
                while loop != nil && nextProbe <= now {
                    loop!.probed(due: nextProbe, now: nextProbe)
                    nextProbe += 20_000_000
                }
                if now >= phaseEnd && now < end {
                    rate = uniform() < 0.3 ? capacity * 0.2 : capacity * (1 + 3 * uniform())
                    phaseEnd = now + UInt64(50_000_000 + uniform() * 400_000_000)
                }
                let arrivalDue = now < end ? nextArrival : UInt64.max
                if let batch = inRedis, batch.replyAt <= arrivalDue {
                    now = max(now, batch.replyAt)
                    inRedis = nil
                    let first = pipeline.head + 1
                    handle(pipeline.commitReplied(batchID: batch.id, .committed(firstClock: first, atMs: now / 1_000_000), now: now))
                } else if arrivalDue != UInt64.max {
                    now = arrivalDue
                    let id = JSONValue.number(nextID)
                    nextID += 1
                    arrivals[id] = now
                    let ops = Ops(["r\(nextID % 50)": .put(.object(["v": .number(nextID)]))])
                    handle(
                        pipeline.push(
                            from: 0, sessionID: "s", pushID: id, base: pipeline.head, ops: ops, bytes: 30, readOnly: false, now: now,
                            marginNanos: UInt64(loop?.marginNanos ?? 0)))
                    nextArrival = now + UInt64(-log(max(uniform(), 1e-12)) / rate * 1e9)
                } else {
                    break
                }
                if pipeline.queuedCount > 0 && inRedis == nil { idleWhileQueued += 1 }
            }
        }
    }

    @Test func acceptedPushesWaitAtMostTheBoundPlusOneBatchWhenTheModelIsRight() {
        var accepted = 0
        var refused = 0
        for seed in UInt64(1)...60 {
            let roundTrip = 20e6 + Double(seed % 7) * 4e6
            let perPush = 1e6 + Double(seed % 5) * 5e5
            var simulation = Simulation(
                seed: seed, roundTrip: roundTrip, perPush: perPush, priors: (roundTrip, perPush), noise: 0, maxBatch: 16)
            simulation.run(duration: 1_500_000_000)
            let oneBatch = roundTrip + 15 * perPush
            let worst = simulation.waits.map(\.wait).max() ?? 0
            #expect(Double(worst) <= 250e6 + oneBatch, "seed \(seed): an accepted push waited \(Double(worst) / 1e6) ms")
            #expect(simulation.idleWhileQueued == 0, "seed \(seed): Redis idle while pushes waited")
            #expect(simulation.arrivals.isEmpty, "seed \(seed): \(simulation.arrivals.count) pushes never answered")
            accepted += simulation.waits.count
            refused += simulation.refusals.count
            // Refused pushes are told to come back spread over the time the doc needs to absorb them: at
            // least about as many as were refused, at its capacity.
            if simulation.refusals.count > 20 {
                let spread = simulation.refusals.map(\.retryAfterMs).max()!
                #expect(spread > 50, "seed \(seed): \(simulation.refusals.count) refusals, all told to retry within \(spread) ms")
            }
        }
        // Overload happened (bursts reach 4× capacity, so most pushes of a burst are refused).
        #expect(refused > 1_000)
        #expect(accepted > 1_000)
    }

    @Test func theModelLearnsWrongStartingEstimatesUnderNoise() {
        for seed in UInt64(1)...20 {
            let roundTrip = 30e6
            let perPush = 2e6
            // Starting 10× too optimistic, or 10× too pessimistic.
            let priors = seed % 2 == 0 ? (roundTrip / 10, perPush / 10) : (roundTrip * 10, perPush * 10)
            var simulation = Simulation(seed: seed, roundTrip: roundTrip, perPush: perPush, priors: priors, noise: 0.1, maxBatch: 16)
            simulation.run(duration: 2_500_000_000)
            let warmUp = simulation.waits.first.map { $0.arrival + 1_000_000_000 } ?? 0
            let worst = simulation.waits.filter { $0.arrival >= warmUp }.map(\.wait).max() ?? 0
            let oneBatch = (roundTrip + 15 * perPush) * 1.1
            #expect(Double(worst) <= 250e6 * 1.2 + oneBatch, "seed \(seed): waited \(Double(worst) / 1e6) ms after the warm-up")
            // The two parameters are only identified apart when batch sizes vary, but the service time of
            // full batches — where admission decides under load — is learned: closely from too optimistic a
            // start (the direction that would break the bound), and at least halfway from too pessimistic a
            // start (which only refuses more than needed, and shrinks the batches it learns from).
            let full = roundTrip + 15 * perPush
            let learned = simulation.pipeline.model
            let error = abs(learned.serviceNanos(size: 16) - full)
            if seed % 2 == 0 {
                #expect(error < full * 0.25, "seed \(seed): \(learned)")
            } else {
                let start = ServiceTimeModel(
                    roundTripNanos: UInt64(priors.0), perPushNanos: UInt64(priors.1), weight: 0.2, maxBatch: 16)
                #expect(error < abs(start.serviceNanos(size: 16) - full) / 2, "seed \(seed): \(learned)")
            }
        }
    }

    /// Answers that leave up to 80 ms after what the model sees (uniformly): with estimates alone, a push
    /// admitted near the bound is answered past it — the overrun sync-20k showed on a saturated node. With
    /// the loop's learned margin (`LoopLoad.answered`, the p99 of the overruns kept free of the bound),
    /// about 1 % of accepted pushes pass the bound after the first windows; without it, many times more.
    @Test func theLearnedMarginKeepsAcceptedPushesWithinTheBound() {
        func lateShare(margin: Bool) -> (late: Double, accepted: Int) {
            var late = 0
            var accepted = 0
            // A doc fast enough for a few hundred answers per margin window at capacity (as a shard's loop
            // of docs has at saturation: ~10,000 a second).
            for seed in UInt64(1)...10 {
                let roundTrip = 2e6 + Double(seed % 7) * 4e5
                let perPush = 1e5 + Double(seed % 5) * 5e4
                var simulation = Simulation(
                    seed: seed, roundTrip: roundTrip, perPush: perPush, priors: (roundTrip, perPush), noise: 0.1, maxBatch: 16)
                simulation.unseenNanos = 80e6
                if margin {
                    simulation.loop = LoopLoad(maxLagNanos: 250_000_000, maxRetryAfterMs: 30_000, randomSeed: seed, maxMarginNanos: 200_000_000)
                    simulation.nextProbe = simulation.now
                }
                let start = simulation.now
                simulation.run(duration: 3_000_000_000)
                #expect(simulation.arrivals.isEmpty, "seed \(seed): \(simulation.arrivals.count) pushes never answered")
                // After a warm-up of half a second (the first windows learn the margin).
                let measured = simulation.waits.filter { $0.arrival >= start + 500_000_000 }
                late += measured.filter { $0.wait > 250_000_000 }.count
                accepted += measured.count
                if ProcessInfo.processInfo.environment["ADMISSION_SHARES"] != nil {
                    let sorted = measured.map(\.wait).sorted()
                    print("seed \(seed) margin \(margin): accepted \(measured.count), late \(measured.filter { $0.wait > 250_000_000 }.count), p50 \(sorted[sorted.count / 2] / 1_000_000) p99 \(sorted[sorted.count * 99 / 100] / 1_000_000) ms, margin refusals \(simulation.pipeline.counters.marginRefusals), margin now \((simulation.loop?.marginNanos ?? 0) / 1e6)")
                }
                // (The margin made the difference for some: refused within the bound, outside it less the margin.)
                if margin { #expect(simulation.pipeline.counters.marginRefusals > 0, "seed \(seed)") }
            }
            return (Double(late) / Double(max(accepted, 1)), accepted)
        }
        let with = lateShare(margin: true)
        let without = lateShare(margin: false)
        #expect(with.accepted > 10_000 && without.accepted > 10_000)
        #expect(with.late <= 0.02, "with the margin: \(with.late * 100) % of accepted pushes answered past the bound")
        #expect(without.late >= 5 * max(with.late, 0.002), "without: \(without.late * 100) %, with: \(with.late * 100) %")
        if ProcessInfo.processInfo.environment["ADMISSION_SHARES"] != nil {
            print("late share with the margin \(with.late * 100) % of \(with.accepted), without \(without.late * 100) % of \(without.accepted)")
        }
    }
}
