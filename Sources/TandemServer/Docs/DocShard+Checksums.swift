import NIOCore
import TandemCore

/// Integrity checksums on a shard (issue 13; the checksum itself: `DocChecksum`).
///
/// A replica is compared with what Redis says in three places:
/// - after each commit that carries Redis's checksum (`SyncDoc.divergence`, checked after every batch of
///   pipeline actions): the replica applied the commit and got another state;
/// - every `--checksum-check-ms`, for every doc the node holds (`checkChecksum`): the replica at Redis's
///   head against the checksum Redis stores with that head — this also finds a replica that drifted
///   without any commit, or Redis's state changed behind Tandem's back;
/// - at every load (`verifyLoaded`): the records read against the checksum stored with them. They only
///   differ when Redis's records were changed behind Tandem's back (or a record no longer parses): the
///   node then makes the stored checksum describe the records — they are the data, and every other node
///   and client converges on them — and counts it.
/// Each mismatch counts once in `tandem_sync_divergence_total{source="node"}`, is logged as an error, and
/// the node reads the doc again (at most once a second per doc): every member restarts from a snapshot.
extension DocShard {
    /// The least time between two divergence reloads of one doc: a doc that keeps diverging (a bug) must
    /// not turn into a loop of full reads.
    static let minResyncIntervalMs: UInt64 = 1_000

    /// After pipeline actions: did the replica, applying a commit, get a checksum other than Redis's?
    func noticeDivergence(_ doc: String, _ docState: DocState) {
        guard let divergence = docState.sync.delivery.divergence, !docState.sync.reloadPending, resync(doc, docState) else {
            return
        }
        logger.error(
            "doc replica diverged from Redis after a commit; reloading it",
            metadata: [
                "doc": "\(doc)", "clock": "\(divergence.clock)", "expected": "\(divergence.expected)",
                "actual": "\(divergence.actual)",
            ])
    }

    /// The periodic comparison: Redis's head and stored checksum against the replica's.
    func checkChecksum(_ doc: String, _ docState: DocState, nowMs: UInt64) {
        let interval = UInt64(settings.checksumCheckMs)
        // Spread over the interval, like reconciles, so that many docs are not checked at once.
        docState.upkeep.nextChecksumCheckMs = nowMs + interval / 2 + UInt64.random(in: 0...interval)
        guard !docState.upkeep.checksumInFlight, docState.sync.isLoaded, !docState.sync.reloadPending, redisIsUp(doc) else { return }
        docState.upkeep.checksumInFlight = true
        metrics.syncChecksumChecks.increment()
        let bound = NIOLoopBound(docState, eventLoop: eventLoop)  // unwrapped on this loop only
        syncStore.storedSum(doc: doc, on: eventLoop).whenComplete { result in
            let docState = bound.value
            docState.upkeep.checksumInFlight = false
            guard self.docs[doc] === docState, case .success(let stored) = result, let replica = docState.sync.delivery.replica,
                !docState.sync.reloadPending
            else { return }
            // A replica behind (or ahead of) Redis's head is compared at the next check: the head check
            // reads what it misses.
            guard replica.head == stored.head, stored.head > 0 else { return }
            guard let sum = stored.sum else {
                // No checksum for this head (a doc from before checksums, or a node from before them
                // committed last): this replica's becomes it.
                _ = self.syncStore.seedSum(doc: doc, head: replica.head, sum: replica.sum, replace: false, on: self.eventLoop)
                return
            }
            guard sum != replica.sum, self.resync(doc, docState) else { return }
            self.logger.error(
                "doc replica differs from Redis's checksum at the same clock; reloading it",
                metadata: ["doc": "\(doc)", "clock": "\(replica.head)", "redis": "\(sum)", "replica": "\(replica.sum)"])
        }
    }

    /// A doc was read from Redis: do its records add up to the checksum stored with them?
    func verifyLoaded(_ loaded: SyncStore.LoadedDoc, doc: String, _ docState: DocState) {
        let replica = loaded.replica
        guard replica.head > 0 else { return }
        if loaded.storedSum == replica.sum { return }
        if let stored = loaded.storedSum {
            metrics.syncDivergences[.node]!.increment()
            logger.error(
                "doc records in Redis do not match their checksum (changed behind Tandem's back?); the checksum now describes them",
                metadata: ["doc": "\(doc)", "clock": "\(replica.head)", "stored": "\(stored)", "records": "\(replica.sum)"])
        }
        // No periodic comparison until the checksum is stored: it would find the old one and count the
        // same divergence again.
        docState.upkeep.checksumInFlight = true
        let bound = NIOLoopBound(docState, eventLoop: eventLoop)  // unwrapped on this loop only
        syncStore.seedSum(doc: doc, head: replica.head, sum: replica.sum, replace: loaded.storedSum != nil, on: eventLoop)
            .whenComplete { _ in bound.value.upkeep.checksumInFlight = false }
    }

    /// A batch was committed without checksums (Redis had none for the clock before it, or the batch's
    /// deltas started from a record another node had changed): if the replica is at the batch's last
    /// clock, its checksum becomes Redis's (only if the head is still there), so later commits carry one.
    func seedChecksum(_ doc: String, _ docState: DocState, afterClock clock: UInt64) {
        guard let replica = docState.sync.delivery.replica, replica.head == clock, !docState.sync.reloadPending else { return }
        _ = syncStore.seedSum(doc: doc, head: clock, sum: replica.sum, replace: false, on: eventLoop)
    }

    /// Counts a divergence of this node's replica and reads the doc again, replacing the replica. False
    /// (nothing counted or done) within a second of the last one: it is found again after that.
    @discardableResult
    func resync(_ doc: String, _ docState: DocState) -> Bool {
        let nowMs = clock.nowMs()
        guard nowMs >= docState.upkeep.lastResyncMs + Self.minResyncIntervalMs || docState.upkeep.lastResyncMs == 0 else {
            return false
        }
        docState.upkeep.lastResyncMs = nowMs
        metrics.syncDivergences[.node]!.increment()
        perform(docState.sync.resync(now: clock.nowNanos()), doc: doc, docState)
        return true
    }
}
