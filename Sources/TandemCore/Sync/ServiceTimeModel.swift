/// How long a doc's group commits take, learned from the ones measured: the basis of admission by
/// waiting time.
///
/// The model. A doc has at most one batch in Redis at a time, and the next batch takes everything that
/// waits (up to `maxBatchPushes`). A batch of `k` pushes takes
///
///     S(k) = roundTrip + (k − 1) × perPush
///
/// where `roundTrip` is what any commit costs (event-loop hop, network, script start, publish, reply,
/// delivery bookkeeping) and `perPush` what each further push adds (deciding it, its arguments, its
/// writes and log bytes in Redis). A push that arrives with `q` pushes queued ahead of it is in the
/// batch after those, so with `n = q + 1` and `b = ⌈n / maxBatchPushes⌉` batches to go it waits
///
///     W(q) = remaining(in-flight batch) + b × roundTrip + (n − b) × perPush
///
/// (the sum of S over the b batches). Both parameters are exponentially weighted averages: a batch of
/// one push measures `roundTrip`; a larger batch measures `perPush` as (duration − roundTrip) / (k − 1),
/// weighted by its size (see `observe`).
/// When the node is saturated, every round trip stretches (replies wait in the event loop), the
/// estimates grow, and admission refuses sooner — which is the point: a refused push costs the node
/// almost nothing, an accepted one that waits seconds costs memory and the client's patience.
///
/// A push with nothing ahead of it (no queue, no batch in Redis) is always admitted, and the per-push
/// cost is capped at a round trip, so a slow spell cannot lock the model into refusing (see below).
///
/// The model ignores arrivals after the push (they queue behind it) and retries after lost races
/// (rare, bounded by `maxAttempts`), so under steady conditions the actual wait is W(q) plus at most
/// the batch in flight running late. `PushAdmissionTests` checks that bound in simulated overload (bursts
/// up to 4× capacity), also after starting from wrong estimates with ±10 % noise in the service times.
public struct ServiceTimeModel: Sendable, Equatable {
    public private(set) var roundTripNanos: Double
    public private(set) var perPushNanos: Double
    public let weight: Double
    /// The largest batch (`maxBatchPushes`).
    public let maxBatch: Int

    public init(roundTripNanos: UInt64, perPushNanos: UInt64, weight: Double, maxBatch: Int) {
        self.roundTripNanos = Double(roundTripNanos)
        self.perPushNanos = Double(perPushNanos)
        self.weight = min(max(weight, 0.01), 1)
        self.maxBatch = max(maxBatch, 2)
    }

    /// A batch of `size` pushes took `nanos` from sending to its reply.
    public mutating func observe(size: Int, nanos: UInt64) {
        guard size >= 1 else { return }
        let duration = Double(nanos)
        if size == 1 {
            roundTripNanos += weight * (duration - roundTripNanos)
        } else {
            // A small batch says little about the per-push cost (its duration is mostly round trip, and
            // the round trip's noise divided by k − 1 dominates), a full one says most: weigh by k − 1.
            // Full batches are also where admission decides.
            let each = max(0, duration - roundTripNanos) / Double(size - 1)
            let share = min(Double(size - 1) / Double(maxBatch - 1), 1)
            perPushNanos += weight * share * (each - perPushNanos)
        }
    }

    /// The per-push cost used in estimates: never more than a round trip — batching is never slower
    /// than committing one push at a time. (Without the cap, one slow batch could inflate it so much that
    /// only lone pushes were admitted, batches stayed at one push, and the estimate never came back.)
    public var effectivePerPushNanos: Double { min(perPushNanos, roundTripNanos) }

    /// S(k): the expected duration of a batch of `size` pushes.
    public func serviceNanos(size: Int) -> Double {
        roundTripNanos + Double(max(size, 1) - 1) * effectivePerPushNanos
    }

    /// W: the expected wait of a push with `ahead` pushes queued before it, when the batch in flight
    /// (if any) still needs `remainingNanos`.
    public func waitNanos(ahead: Int, maxBatch: Int, remainingNanos: Double) -> Double {
        let n = ahead + 1
        let batches = (n + max(maxBatch, 1) - 1) / max(maxBatch, 1)
        return remainingNanos + Double(batches) * roundTripNanos + Double(n - batches) * effectivePerPushNanos
    }
}

/// SplitMix64: a small, seedable generator for the retry-after jitter, so a pipeline is deterministic
/// given its seed (tests pass fixed seeds; the server seeds it from the system generator).
public struct SplitMix64: RandomNumberGenerator, Sendable, Equatable {
    private var state: UInt64

    public init(seed: UInt64) { state = seed }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
