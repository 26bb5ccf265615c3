import NIOCore
import TandemCore

/// A commit round (issue 8, stop 30): the group commits a shard's docs form during one pass of its event
/// loop, sent to Redis as ONE script call (`GroupCommitScript.commitRound`) instead of one per doc.
///
/// Under load most group commits carry one push of one doc (1.03 pushes per commit at 10,000 pushes/s
/// over 200 docs), and each paid Redis's cost of a call again: dispatching it, the script's set-up and
/// reply, Redis's GC step every 50 calls, and the arguments every doc repeats. A round pays those once:
/// redis-server's instructions per commit of one push fall from ~171,000 alone to ~162,000 in rounds of
/// 4 docs and ~157,000 in rounds of 16 (`SIDE=server ROUND=K scripts/redis-cost.sh`, docs/benchmarks.md).
///
/// Nothing waits to form a round: the first commit of a pass schedules the round's sending
/// (`eventLoop.execute`), which runs after the work already queued on the loop (the replies, pushes and
/// timers of this pass), so the commits those produce join it; the round then goes at once. A round of
/// one doc is that doc's usual `GroupCommitScript.commit` call. A round is capped by
/// `--commit-round-max-docs` and by `--max-batch-bytes` of batches (a call stays short: Redis runs
/// nothing else meanwhile); a batch that reaches a cap sends the round it completes at once.
///
/// Except, on a loop that runs behind (`doorbellMinLagNanos`), for commits decided while the shard handles
/// Redis's answer to a commit (the docs' next batches): their rounds — full ones too — go at the loop's
/// next tick, with its socket reads (`LoopDoorbell`), not with `execute`. Sent from a reply with `execute`, a round ran in the same task
/// phase of the loop, and so did its reply ~100 µs later, and the next round: a busy node cycled between
/// Redis and its docs for hundreds of milliseconds without reading a socket (stop 31). The doorbell makes
/// every such cycle pass through the loop's I/O: commits still go once per tick, and pushes, pings and
/// everything else that arrived meanwhile are read in between.
///
/// Each doc is decided, replied to and handled as alone: the pipeline still emits one commit per doc and
/// gets that doc's own reply (`DocShard.commitCompleted`); a doc's conflict, duplicate or size refusal
/// does not touch the others. A failed call (Redis down, a script stopped by an error) fails every doc
/// of the round, each as a failed commit (a head check follows). A single Redis only: a Cluster keeps
/// one call per doc (a script's keys must share one slot) — and the same doorbell: on a lagging loop a
/// doc's commit decided in a reply goes at the next tick too (`waitingAlone`), or a Cluster node would
/// cycle between Redis and its docs as a single Redis's did.
final class CommitRound {
    struct Pending {
        var entry: SyncStore.RoundEntry
        var docState: DocState

        init(_ batch: CommitBatch, doc: String, _ docState: DocState, ownSubscribers: Int) {
            entry = SyncStore.RoundEntry(doc: doc, batch: batch, checkLegacy: docState.legacyRePushes, ownSubscribers: ownSubscribers)
            self.docState = docState
        }
    }

    /// The round being formed, in the order its commits were decided.
    var pending: [Pending] = []
    /// What its batches carry (`CommitBatch.bytes`).
    var bytes = 0
    /// Its sending is scheduled on the loop.
    var scheduled = false
    /// It holds a batch decided while handling a commit's reply on a lagging loop: it waits for the
    /// doorbell (unless a batch decided outside a reply sends it earlier, with `execute`).
    var pendingAtDoorbell = false
    /// Full rounds formed while handling a commit's reply: they go when the doorbell answers, before `pending`.
    var ready: [[Pending]] = []
    /// Commits of one doc each (a Cluster's, or rounds off) decided while handling a commit's reply on a
    /// lagging loop: each goes alone when the doorbell answers, in the order decided.
    var waitingAlone: [Pending] = []
    /// The shard is handling Redis's answer to one of its commit calls: rounds wait for the doorbell.
    var inReply = false
    /// Rings at the loop's next tick (made when the shard starts; without it, rounds go with `execute`).
    var doorbell: LoopDoorbell?

    /// Commits decided in a reply (rounds, or a doc's alone) wait for the doorbell only while the loop runs at
    /// least this much behind (`LoopLoad`, smoothed): a loop that keeps up drains its tasks between replies
    /// anyway, and a ring costs a write, a wake-up and a read (sync-10k: ~5 µs more CPU per commit when every
    /// such round rang).
    static let doorbellMinLagNanos = 1_000_000.0
}

extension DocShard {
    /// Adds the doc's batch to the round this loop pass forms (see `CommitRound`).
    func joinCommitRound(_ batch: CommitBatch, doc: String, _ docState: DocState, ownSubscribers: Int) {
        let round = commitRound.value
        round.pending.append(CommitRound.Pending(batch, doc: doc, docState, ownSubscribers: ownSubscribers))
        round.bytes += batch.bytes
        let full = round.pending.count >= settings.commitRoundMaxDocs || round.bytes >= settings.pushPipelineSettings.maxBatchBytes
        if let doorbell = doorbellWhileReplying() ?? doorbellWhileHolding() {
            if full {
                round.ready.append(round.pending)
                round.pending = []
                round.bytes = 0
                round.pendingAtDoorbell = false
            } else {
                round.pendingAtDoorbell = true
            }
            doorbell.ring()
        } else if full {
            sendCommitRound()
        } else if !round.scheduled {
            round.scheduled = true
            eventLoop.execute {
                self.commitRound.value.scheduled = false
                // While full rounds wait for the doorbell, this one goes behind them, when it answers.
                if self.doorbellWhileHolding() == nil { self.sendCommitRound() }
            }
        }
    }

    /// A doc's group commit that goes alone (a Cluster's, or rounds off): at once, or, decided while
    /// handling a commit's reply on a lagging loop, at the doorbell (see `CommitRound`).
    func commitAloneOrAtDoorbell(_ batch: CommitBatch, doc: String, _ docState: DocState, ownSubscribers: Int) {
        guard let doorbell = doorbellWhileReplying() ?? doorbellWhileHolding() else {
            commitAlone(batch, doc: doc, docState, ownSubscribers: ownSubscribers)
            return
        }
        commitRound.value.waitingAlone.append(CommitRound.Pending(batch, doc: doc, docState, ownSubscribers: ownSubscribers))
        doorbell.ring()
    }

    /// The doorbell, when what is decided now must wait for it: the shard is handling a commit's reply
    /// and its loop runs at least `commitRoundDoorbellMinLagNanos` behind.
    private func doorbellWhileReplying() -> LoopDoorbell? {
        let round = commitRound.value
        guard round.inReply, let doorbell = round.doorbell,
            confined.value.loopLoad.lagNanos >= settings.commitRoundDoorbellMinLagNanos
        else { return nil }
        return doorbell
    }

    /// The doorbell, while calls decided in a reply wait for it and a doc may have several batches in Redis
    /// (`--max-batches-in-flight` above 1): what is decided now goes behind them. Sent at once, a doc's later
    /// batch reached Redis before its earlier one, found the doc's tail short of the one it was decided on and
    /// wrote nothing (decided again: one wasted call). Waiting costs at most the rest of the loop's task
    /// phase. With one batch in flight per doc (the default) a doc has no later batch while one waits, and
    /// nothing else waits.
    private func doorbellWhileHolding() -> LoopDoorbell? {
        let round = commitRound.value
        guard settings.pushPipelineSettings.maxBatchesInFlight > 1, let doorbell = round.doorbell,
            !round.ready.isEmpty || !round.waitingAlone.isEmpty
        else { return nil }
        return doorbell
    }

    /// The doorbell answered (the loop's next tick): what was decided while handling replies goes.
    func commitRoundDoorbellAnswered() {
        let round = commitRound.value
        let ready = round.ready
        let alone = round.waitingAlone
        round.ready = []
        round.waitingAlone = []
        // (The round being formed counts only if a reply held it: batches decided outside one would have
        // gone with `execute` anyway.)
        let calls = ready.count + alone.count + (round.pendingAtDoorbell && !round.pending.isEmpty ? 1 : 0)
        if calls > 0 { metrics.syncCommitCallsAtDoorbell.increment(by: Int64(calls)) }
        for pending in ready { send(pending) }
        for one in alone { commitAlone(one) }
        sendCommitRound()
    }

    /// Makes the shard's doorbell (at its start): until it exists, every round goes with `execute`.
    func makeCommitRoundDoorbell() {
        LoopDoorbell.make(on: eventLoop) { [weak self] in self?.commitRoundDoorbellAnswered() }.whenComplete { result in
            switch result {
            case .success(let doorbell):
                let round = self.commitRound.value
                if self.confined.value.stopped { doorbell.close() } else { round.doorbell = doorbell }
            case .failure(let error as LoopDoorbell.NotASelectorLoop):
                self.logger.debug("no doorbell for commit rounds: rounds go as tasks", metadata: ["error": "\(error)"])
            case .failure(let error):
                self.logger.warning("no doorbell for commit rounds: rounds go as tasks", metadata: ["error": "\(error)"])
            }
        }
    }

    /// Sends the round formed so far, if any, and hands each doc its reply.
    func sendCommitRound() {
        let round = commitRound.value
        guard !round.pending.isEmpty else { return }
        let pending = round.pending
        round.pending = []
        round.pending.reserveCapacity(pending.count)
        round.bytes = 0
        round.pendingAtDoorbell = false
        send(pending)
    }

    /// Sends one round: one doc's alone, more as a commit round.
    private func send(_ pending: [CommitRound.Pending]) {
        metrics.syncCommitRoundDocs.record(Double(pending.count))
        if pending.count == 1 {
            commitAlone(pending[0])
            return
        }
        let bound = NIOLoopBound(pending, eventLoop: eventLoop)  // unwrapped on this loop only
        syncStore.commitRound(pending.map(\.entry), on: eventLoop).whenComplete { result in
            let pending = bound.value
            self.handlingCommitReply {
                for k in pending.indices {
                    let doc = pending[k].entry.doc
                    switch result {
                    case .success(let replies):
                        self.commitCompleted(replies[k], batch: pending[k].entry.batch, doc: doc, pending[k].docState)
                    case .failure(let error):
                        self.commitCompleted(.failure(error), batch: pending[k].entry.batch, doc: doc, pending[k].docState)
                    }
                }
            }
        }
    }

    /// One doc's group commit as its own call (`commitAlone`).
    private func commitAlone(_ one: CommitRound.Pending) {
        commitAlone(one.entry.batch, doc: one.entry.doc, one.docState, ownSubscribers: one.entry.ownSubscribers)
    }

    /// Runs `body`, the handling of Redis's answer to one of the shard's commit calls (a round's or a doc's
    /// alone): commits decided meanwhile wait for the loop's next tick (`doorbellWhileReplying`).
    func handlingCommitReply(_ body: () -> Void) {
        let round = commitRound.value
        round.inReply = true
        defer { round.inReply = false }
        body()
    }
}
