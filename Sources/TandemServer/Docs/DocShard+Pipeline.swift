import NIOCore
import Prometheus
import TandemCore

/// Carrying out what each doc's `PushPipeline` decides, and feeding it its inputs.
///
/// The pipeline is pure: it is told what happened (a push, Redis's reply, commits from pub/sub, a log
/// read, the time) and returns actions. This is the thin shell around it: every input ends in
/// `perform`, which does the I/O the actions ask for (a group commit, a log read, a reload), sends what
/// they say to whom (one hop per event loop, see `SyncOutbox`), turns the pipeline's counters into
/// metrics and sets the doc's one timer for the pipeline's next deadline.
extension DocShard {
    // MARK: Inputs

    /// Commits from the doc's pub/sub channel (another node's; this node's own are skipped unread).
    func received(_ commits: [CommitNotice], doc: String, _ docState: DocState) {
        perform(docState.sync.receive(commits, now: clock.nowNanos()), doc: doc, docState)
    }

    /// Compares the replica with Redis's head (periodically and after Redis reconnects); also keeps the
    /// doc's keys alive in Redis while this node holds it open.
    func checkHead(_ doc: String, _ docState: DocState) {
        guard docState.sync.isLoaded, redisIsUp(doc) else { return }
        let bound = NIOLoopBound(docState, eventLoop: eventLoop)  // unwrapped on this loop only
        // What Redis held before the read (a lower head in the reply means it lost commits since).
        let known = docState.sync.knownRedisHead
        syncStore.headKeepingAlive(doc: doc, on: eventLoop).whenSuccess { head in
            let docState = bound.value
            guard self.docs[doc] === docState else { return }
            self.perform(docState.sync.headObserved(head, knownAtIssue: known, now: self.clock.nowNanos()), doc: doc, docState)
        }
    }

    /// The command connection to Redis (in a cluster: a shard's primary) went down or came back: each
    /// doc follows its own shard.
    func redisAvailabilityChanged() {
        onLoop {
            let now = self.clock.nowNanos()
            for (doc, docState) in self.docs {
                self.perform(docState.sync.setRedisAvailable(self.redisIsUp(doc), now: now), doc: doc, docState)
            }
        }
    }

    /// A member stopped receiving the doc (left, lost its socket, taken over, re-joined elsewhere): its
    /// pushes not in Redis yet are dropped unanswered (its client re-sends them after it reconnects).
    func detachSync(_ member: ObjectIdentifier, doc: String, _ docState: DocState) {
        docState.updateUnread { $0.awaiting.removeValue(forKey: member) }
        docState.catchUps.forget(member)
        docState.earlyRequests.removeValue(forKey: member)
        perform(docState.sync.detach(member, now: clock.nowNanos()), doc: doc, docState)
    }

    // MARK: Actions

    /// Carries out `actions` in order and sends what they produced.
    func perform(_ actions: [PushAction<ObjectIdentifier>], doc: String, _ docState: DocState) {
        if !actions.isEmpty {
            // About an item per action (a patch or a result) and a pair per member and action.
            var outbox = SyncOutbox(expectedItems: actions.count, expectedSends: actions.count * docState.members.count)
            perform(actions, doc: doc, docState, into: &outbox)
            outbox.flush()
            noticeDivergence(doc, docState)
        }
        scheduleSyncTimer(doc, docState)
    }

    /// Carries out `actions` in order; what they send goes to `outbox` (flushed by the caller).
    func perform(_ actions: [PushAction<ObjectIdentifier>], doc: String, _ docState: DocState, into outbox: inout SyncOutbox) {
        guard !actions.isEmpty else { return }
        for action in actions {
            switch action {
            case .commit(let batch):
                commit(batch, doc: doc, docState)
            case .deliver(let commit, let patchTo, let result):
                if !patchTo.isEmpty {
                    // `at` comes from Redis (or pub/sub): a time in the future counts as no lag, not as 584 million years.
                    let nowWall = clock.wallMs()
                    docState.stats.recordLag(Double(nowWall >= commit.committedAtMs ? nowWall - commit.committedAtMs : 0))
                    // Framed once: the same buffer goes to every member (`PreframedWriter`), and is in the
                    // outbox once per event loop (`SyncOutbox.share`).
                    let patch = ServerFrame.text(ServerMessage.patch(doc: doc, commit: commit), allocator: ByteBufferAllocator())
                    outbox.share(.frame(patch, committedAtMs: commit.committedAtMs))
                    for id in patchTo {
                        guard let connection = docState.members[id]?.connection else { continue }
                        outbox.addShared(connection)
                    }
                }
                if let result {
                    loopLoad.committed(1)
                    answer(result, doc: doc, docState, into: &outbox)
                }
            case .answer(let reply):
                answer(reply, doc: doc, docState, into: &outbox)
            case .readLog(let from, let count):
                readLog(from: from, count: count, doc: doc, docState)
            case .reload:
                reload(doc, docState)
            case .catchUp(let member, let catchUp):
                guard let connection = docState.members[member]?.connection else { continue }
                send(catchUp, to: connection, doc: doc, docState, into: &outbox)
            }
        }
        countPipelineWork(doc, docState)
    }

    /// A push's answer: its `result` in the member's stream, or an error.
    private func answer(_ reply: PushReply<ObjectIdentifier>, doc: String, _ docState: DocState, into outbox: inout SyncOutbox) {
        switch reply.answer {
        case .result(let action, let clock, let applied, let reason):
            let violation = reply.violation
            metrics.syncPush(action)
            if violation != nil { metrics.syncInvalidPushes.increment() }
            if reply.conflicted {
                metrics.syncConflicts.increment()
                docState.stats.conflicts += 1
            }
            let now = self.clock.nowNanos()
            metrics.syncPushSeconds.record(Double(now >= reply.receivedAtNanos ? now - reply.receivedAtNanos : 0) / 1e9)
            if let sentAt = reply.sentAtNanos {
                // Where its time in the doc went: queued behind the batch in Redis, or in its own batch.
                let queued = sentAt >= reply.receivedAtNanos ? sentAt - reply.receivedAtNanos : 0
                metrics.syncPushQueueStage.record(Double(queued) / 1e9)
                metrics.syncPushCommitStage.record(Double(now >= sentAt ? now - sentAt : 0) / 1e9)
            }
            if let estimated = reply.estimatedNanos {
                // What admission bounded against what it took: the loop learns its margin from the overrun.
                let inDoc = now >= reply.receivedAtNanos ? now - reply.receivedAtNanos : 0
                loopLoad.answered(inDocNanos: inDoc, estimatedNanos: estimated)
                metrics.syncPushSojourn.record(Double(reply.waitedNanos &+ inDoc) / 1e9)
                metrics.syncPushOverrun.record(Double(inDoc > estimated ? inDoc - estimated : 0) / 1e9)
            }
            guard let connection = docState.members[reply.member]?.connection else { return }
            let frame = ServerMessage.result(
                doc: doc, id: reply.pushID, action: action, clock: clock, applied: applied, reason: reason, violation: violation,
                sum: reply.sum)
            outbox.add(connection, .frame(ServerFrame.text(frame, allocator: ByteBufferAllocator()), committedAtMs: nil))
        case .error(let code, let message, let docHint):
            metrics.syncPush("error")
            // The doc's hint sees the doc's capacity; the loop's also sees every other busy doc on it.
            let retryAfterMs = docHint.map { loopLoad.retryAfterMs(now: self.clock.nowNanos(), atLeastMs: $0) }
            if let retryAfterMs {
                metrics.syncRetryAfterSeconds.record(Double(retryAfterMs) / 1000)
                // The member's pushes already on their way are refused at the doc until then (`MemberPushBackoff`).
                docState.pushBackoff.refused(reply.member, retryAfterMs: retryAfterMs, now: self.clock.nowNanos())
            }
            guard let connection = docState.members[reply.member]?.connection else { return }
            outbox.add(connection, .error(ProtocolError(code, message, doc: doc, pushID: reply.pushID, retryAfterMs: retryAfterMs)))
        }
    }

    /// Runs a group commit and reports Redis's answer to the pipeline: in this loop pass's commit round
    /// with other docs' (a single Redis, `CommitRound`), or alone (a Cluster, or rounds off).
    private func commit(_ batch: CommitBatch, doc: String, _ docState: DocState) {
        metrics.syncBatchSize.record(Double(batch.commits.count))
        // The batch's message is for other nodes: while Redis counts no subscriber of the doc's channel but
        // this node, the script skips it (this node skips its own commits on pub/sub anyway, but hearing
        // each one back woke the subscriber thread and cost Redis a message per batch).
        let ownSubscribers = ownChannelSubscribers(docState)
        if settings.commitRoundMaxDocs > 1 && !redis.isClusterMode {
            joinCommitRound(batch, doc: doc, docState, ownSubscribers: ownSubscribers)
        } else {
            commitAloneOrAtDoorbell(batch, doc: doc, docState, ownSubscribers: ownSubscribers)
        }
    }

    /// One `GroupCommitScript.commit` call for the batch (a Cluster's, or a round of one doc).
    func commitAlone(_ batch: CommitBatch, doc: String, _ docState: DocState, ownSubscribers: Int) {
        let keys = docState.commitKeys ?? GroupCommitScript.encodedKeys(doc)
        docState.commitKeys = keys
        let bound = NIOLoopBound(docState, eventLoop: eventLoop)  // unwrapped on this loop only
        let committed = syncStore.commitReturningSums(
            doc: doc, batch: batch, checkLegacy: docState.legacyRePushes, keys: keys, ownSubscribers: ownSubscribers, on: eventLoop)
        committed.whenComplete { result in
            self.handlingCommitReply { self.commitCompleted(result.mapError { $0 }, batch: batch, doc: doc, bound.value) }
        }
    }

    /// Redis's answer to a doc's group commit (alone or in a round), to the doc's pipeline.
    func commitCompleted(_ result: Result<SyncStore.CommitReply, any Error>, batch: CommitBatch, doc: String, _ docState: DocState) {
        guard docs[doc] === docState else { return }
        let now = clock.nowNanos()
        switch result {
        case .success(let reply):
            if !reply.published { metrics.syncPublishSkipped.increment() }
            perform(docState.sync.commitReplied(batchID: batch.id, reply.outcome, now: now, sums: reply.sums), doc: doc, docState)
            if case .committed(let first, _) = reply.outcome, reply.sums.isEmpty {
                seedChecksum(doc, docState, afterClock: first + UInt64(batch.commits.count) - 1)
            }
        case .failure(let error):
            logger.debug("group commit failed", metadata: ["doc": "\(doc)", "error": "\(error)"])
            let message = SyncStore.commitFailureMessage(error)
            perform(docState.sync.commitReplied(batchID: batch.id, .failed, now: now, failureMessage: message), doc: doc, docState)
            // It may have executed all the same (the reply was lost). This node skips its own commits
            // on pub/sub, so ask Redis for its head: what we miss is then read from the log.
            checkHead(doc, docState)
        }
    }

    /// A gap fill (or a read of what a push or a lost race waits for).
    private func readLog(from: UInt64, count: Int, doc: String, _ docState: DocState) {
        let bound = NIOLoopBound(docState, eventLoop: eventLoop)  // unwrapped on this loop only
        syncStore.log(doc: doc, from: from, count: count, on: eventLoop).whenComplete { result in
            let docState = bound.value
            guard self.docs[doc] === docState else { return }
            let now = self.clock.nowNanos()
            switch result {
            case .success(let read):
                self.perform(docState.sync.logRead(from: from, entries: read.entries, truncated: read.truncated, now: now), doc: doc, docState)
            case .failure(let error):
                self.logger.debug("log read failed", metadata: ["doc": "\(doc)", "error": "\(error)"])
                self.perform(docState.sync.logReadFailed(now: now), doc: doc, docState)
            }
        }
    }

    /// The log no longer has what the replica misses: read the whole doc again.
    private func reload(_ doc: String, _ docState: DocState) {
        logger.warning("reloading doc (commits missing from the retained log, or its replica diverged)", metadata: ["doc": "\(doc)"])
        let bound = NIOLoopBound(docState, eventLoop: eventLoop)  // unwrapped on this loop only
        syncStore.load(doc: doc, on: eventLoop).whenComplete { result in
            let docState = bound.value
            guard self.docs[doc] === docState else { return }
            let now = self.clock.nowNanos()
            switch result {
            case .success(let loaded):
                docState.legacyRePushes = loaded.legacyRePushes
                self.verifyLoaded(loaded, doc: doc, docState)
                self.perform(docState.sync.load(loaded.replica, retainedFrom: loaded.retainedFrom, now: now), doc: doc, docState)
            case .failure(let error):
                self.logger.debug("doc reload failed", metadata: ["doc": "\(doc)", "error": "\(error)"])
                self.perform(docState.sync.loadFailed(now: now), doc: doc, docState)
            }
        }
    }

    // MARK: Time

    /// Keeps the doc's one timer at the pipeline's next deadline (a gap's grace, a wait's end).
    func scheduleSyncTimer(_ doc: String, _ docState: DocState) {
        guard let deadline = docState.askSync({ $0.nextDeadline }) else {
            docState.cancelSyncTimer()
            return
        }
        // A timer due no later is already set: when it fires, the tick schedules the next one.
        if let set = docState.syncTimer, set.deadline <= deadline { return }
        docState.cancelSyncTimer()
        let now = clock.nowNanos()
        // At least a millisecond away: the pipeline never reports a deadline its tick cannot act on, and
        // this keeps a mistake there from spinning the loop.
        let delay = max(deadline > now ? deadline - now : 0, 1_000_000)
        let bound = NIOLoopBound(docState, eventLoop: eventLoop)  // unwrapped on this loop only
        let task = eventLoop.scheduleTask(in: .nanoseconds(Int64(clamping: delay))) { [weak self] in
            let docState = bound.value
            docState.syncTimer = nil
            guard let self, self.docs[doc] === docState else { return }
            self.perform(docState.sync.tick(now: self.clock.nowNanos()), doc: doc, docState)
        }
        docState.syncTimer = DocState.SyncTimer(task: task, deadline: deadline)
    }

    // MARK: Metrics

    /// Turns the pipeline's cumulative counters into metric increments.
    private func countPipelineWork(_ doc: String, _ docState: DocState) {
        let now = docState.sync.counters
        let before = docState.reportedCounters
        guard now != before else { return }
        func add(_ counter: Counter, _ new: UInt64, _ old: UInt64) {
            if new > old { counter.increment(by: Int64(clamping: new - old)) }
        }
        add(metrics.syncBatches, now.batches, before.batches)
        add(metrics.syncLostRaces, now.batchConflicts, before.batchConflicts)
        add(metrics.syncPipelinedBatches, now.pipelinedBatches, before.pipelinedBatches)
        add(metrics.syncPipelineBreaks, now.pipelineBreaks, before.pipelineBreaks)
        add(metrics.syncCommitLingers[.deadline]!, now.lingersExpired, before.lingersExpired)
        add(metrics.syncCommitLingers[.pushes]!, now.lingersFilled, before.lingersFilled)
        if now.lingerNanos > before.lingerNanos {
            metrics.syncCommitLingerSeconds.increment(by: Double(now.lingerNanos - before.lingerNanos) / 1e9)
        }
        add(metrics.syncOverloadRefusals[.wait]!, now.overloadRefusals, before.overloadRefusals)
        add(metrics.syncOverloadRefusals[.queueFull]!, now.queueFullRefusals, before.queueFullRefusals)
        add(metrics.syncOverloadRefusals[.delayed]!, now.delayedRefusals, before.delayedRefusals)
        add(metrics.syncOverloadRefusals[.margin]!, now.marginRefusals, before.marginRefusals)
        add(metrics.syncConcurrentPushes, now.concurrentPushes, before.concurrentPushes)
        add(metrics.syncLogReads, now.logReads, before.logReads)
        if now.clockRegressions > before.clockRegressions {
            metrics.syncClockRegressions.increment(by: Int64(clamping: now.clockRegressions - before.clockRegressions))
            logger.warning(
                "the doc's clock went back in Redis (acknowledged commits lost: a failover or a restore); reloading it and restarting its members from a snapshot",
                metadata: ["doc": "\(doc)", "head": "\(docState.sync.head)"])
        }
        docState.reportedCounters = now
    }
}
