import Logging
import NIOCore
import TandemCore

/// A doc's traffic with Redis outside the push pipeline: the first read (presence and records) that
/// joins wait for, the periodic reconcile against Redis's presence, the sweep of expired nodes, and
/// recovery after Redis comes back.

extension DocShard {
    func redisRecovered(rewrite: Bool) {
        onLoop {
            let nowMs = self.clock.nowMs()
            for (doc, docState) in self.docs {
                if rewrite {
                    docState.presence.writeFailed()
                    docState.upkeep.keepRemoteUntilMs = nowMs + UInt64(self.settings.presenceTTLMs)
                }
                docState.upkeep.nextReconcileMs = 0
                if docState.isLoading {
                    self.load(doc, docState)
                } else if !docState.sync.isLoaded {
                    _ = self.loadSync(doc, docState)
                } else {
                    self.checkHead(doc, docState)
                }
            }
        }
    }
    /// The doc's channel subscription was confirmed: its first subscription, or again after a failover or
    /// slot migration moved it in a cluster. What was published before is not heard: compare the head
    /// with Redis (the gap is then read from the log) and reconcile presence: the next upkeep round's
    /// reconcile does both (one in flight at a time, so a single Redis's reconnect, which re-subscribes
    /// every channel and also recovers every doc, reads each doc once more, not once per path). The doc's
    /// first read may have run before the SUBSCRIBE (another connection), so a doc still loading
    /// reconciles once that read is in.
    func channelResubscribed(doc: String) {
        onLoop {
            guard let docState = self.docs[doc] else { return }
            docState.channelSubscribed = true
            if docState.isLoading {
                docState.upkeep.subscribedWhileLoading = true
            } else {
                docState.upkeep.nextReconcileMs = 0
            }
        }
    }

    /// The subscriber lost its connection: no channel counts as subscribed until Redis confirms it again
    /// (a write that counted this node while it was not subscribed would skip a publish another node
    /// waits for; one that does not count it publishes needlessly, which is harmless).
    func channelsLost() {
        onLoop {
            for docState in self.docs.values { docState.channelSubscribed = false }
        }
    }

    func docState(for doc: String) -> DocState {
        if let existing = docs[doc] { return existing }
        var sync = PushPipeline<ObjectIdentifier>(settings: settings.pushPipelineSettings, randomSeed: UInt64.random(in: 0...UInt64.max))
        if !redisIsUp(doc) { _ = sync.setRedisAvailable(false, now: clock.nowNanos()) }
        sync.schema = schemas.schema(for: doc)
        let docState = DocState(presence: PresenceDoc(doc: doc, settings: settings.presenceSettings), sync: sync)
        docs[doc] = docState
        subscribe(doc: doc)
        load(doc, docState)
        updateGauges()
        return docState
    }

    /// Reads the doc's presence and records from Redis before answering the first joins, so `joined`
    /// lists every node's sessions and carries the head clock. Without Redis the node answers from what
    /// it knows (presence of its own clients) and catches up when Redis returns.
    func load(_ doc: String, _ docState: DocState) {
        let seq = docState.presence.currentEventSeq
        let presence = presenceStore.snapshot(doc: doc, on: eventLoop)
        let sync = loadSync(doc, docState)
        let bound = NIOLoopBound(docState, eventLoop: eventLoop)  // unwrapped on this loop only
        sync.flatMap { presence }.whenComplete { result in
            let docState = bound.value
            guard self.docs[doc] === docState else { return }
            switch result {
            case .success(let entries):
                docState.presence.reconcile(snapshot: entries, requestedAtSeq: seq)
                // A subscription confirmed during the read: the read may predate it (see `channelResubscribed`).
                docState.upkeep.nextReconcileMs =
                    docState.upkeep.subscribedWhileLoading ? 0 : self.clock.nowMs() + UInt64(self.settings.reconcileMs)
            case .failure(let error):
                self.logger.debug("presence snapshot failed; answering from local state", metadata: ["doc": "\(doc)", "error": "\(error)"])
                docState.upkeep.nextReconcileMs = 0
            }
            docState.upkeep.subscribedWhileLoading = false
            for join in docState.becomeLive() { self.completeJoin(join, doc: doc, docState) }
        }
    }

    func reconcile(_ doc: String, _ docState: DocState, nowMs: UInt64) {
        guard !docState.upkeep.reconcileInFlight, redisIsUp(doc, docState) else { return }
        docState.upkeep.reconcileInFlight = true
        // Spread reconciles of many docs over the interval instead of doing them all at once.
        let interval = UInt64(settings.reconcileMs)
        docState.upkeep.nextReconcileMs = nowMs + interval / 2 + UInt64.random(in: 0...interval)
        let seq = docState.presence.currentEventSeq
        if docState.sync.isLoaded { checkHead(doc, docState) } else { _ = loadSync(doc, docState) }
        let bound = NIOLoopBound(docState, eventLoop: eventLoop)  // unwrapped on this loop only
        presenceStore.snapshot(doc: doc, on: eventLoop).whenComplete { result in
            let docState = bound.value
            docState.upkeep.reconcileInFlight = false
            guard self.docs[doc] === docState, case .success(let entries) = result else { return }
            let removeMissing = self.clock.nowMs() >= docState.upkeep.keepRemoteUntilMs
            if !removeMissing {
                // Check again once the other nodes had their chance to re-register.
                docState.upkeep.nextReconcileMs = min(docState.upkeep.nextReconcileMs, docState.upkeep.keepRemoteUntilMs)
            }
            let corrections = docState.presence.reconcile(snapshot: entries, requestedAtSeq: seq, removeMissing: removeMissing)
            if corrections > 0 {
                self.logger.info("reconcile corrected presence", metadata: ["doc": "\(doc)", "corrections": "\(corrections)"])
            }
        }
    }

    func sweep() {
        guard !stopped else { return }
        for (doc, docState) in docs where !docState.upkeep.sweepInFlight && redisIsUp(doc) {
            docState.upkeep.sweepInFlight = true
            let bound = NIOLoopBound(docState, eventLoop: eventLoop)  // unwrapped on this loop only
            presenceStore.sweep(doc: doc, on: eventLoop).whenComplete { result in
                let docState = bound.value
                docState.upkeep.sweepInFlight = false
                guard case .success(let gone) = result, !gone.isEmpty else { return }
                self.logger.info("nodes expired from doc", metadata: ["doc": "\(doc)", "nodes": "\(gone)"])
                self.received(.nodesGone(nodes: gone), doc: doc)
            }
        }
    }
}
