// Forming group commits: which queued pushes go in the next batch, decided against what (see `PushPipeline`).

extension PushPipeline {
    // MARK: Forming batches

    /// Starts the next batch if the doc can take one.
    mutating func pump(_ now: UInt64, into actions: inout [PushAction<Member>]) {
        guard inFlight == nil, delivery.isLoaded, !loadInFlight, !regressed, redisUp else { return }
        if let wait = catchUp {
            if delivery.head >= wait.clock || now >= wait.deadline {
                // Caught up (or out of patience: deciding against what we have is still safe — Redis
                // re-checks — it may just lose the race again).
                catchUp = nil
            } else {
                return
            }
        }
        while !queue.isEmpty {
            if !formBatch(now, into: &actions) { return }
        }
    }

    /// Decides queued pushes into one batch. Returns false when the pipeline must wait (a batch was
    /// sent, or the first push waits for the head), true when everything it took was answered at once.
    mutating func formBatch(_ now: UInt64, into actions: inout [PushAction<Member>]) -> Bool {
        // (`pump` forms batches only for a loaded doc.)
        guard let replica = delivery.replica else { return false }
        var overlay = BatchOverlay(base: replica)
        var entries: [BatchEntry<Member>] = []
        var commitCount = 0
        var bytes = 0
        var keys: Set<PushKey> = []
        var perSession: [String: Int] = [:]
        while let push = queue.first {
            if push.base > replica.head {
                if commitCount > 0 { break }
                if waitForHead(push, now, into: &actions) { return false }
                continue
            }
            if headWait?.seq == push.seq { headWait = nil }  // the replica got there
            let key = PushKey(sessionID: push.sessionID, pushID: push.pushID)
            // The same session and id twice in one batch would both pass the duplicate check: the second
            // goes in the next batch, where Redis recognises it.
            if keys.contains(key) { break }
            if perSession[push.sessionID, default: 0] >= settings.maxSessionPushesPerBatch { break }
            if commitCount > 0 && (commitCount >= settings.maxBatchPushes || bytes + push.bytes > settings.maxBatchBytes) {
                break
            }
            _ = queue.popFirst()
            if push.base < replica.head && push.attempts == 0 { counters.concurrentPushes += 1 }
            let decision: PushDecision
            do {
                decision = try overlay.decide(ops: push.ops, base: push.base, limits: settings.limits, schema: schema)
            } catch {
                actions.append(.answer(refusal(push, error.code, error.message)))
                continue
            }
            if decision.action == .discard {
                if commitCount == 0 {
                    actions.append(
                        .answer(
                            discard(
                                push, reason: decision.reason ?? "void", conflicted: decision.conflicted,
                                violation: decision.violation)))
                } else {
                    // It saw the batch's earlier commits: answer it right after the last of them.
                    entries.append(
                        BatchEntry(push: push, decision: decision, appliedJSON: .null, isCommit: false, commitIndex: commitCount - 1))
                }
                continue
            }
            overlay.apply(decision, pendingClock: replica.head + 1 + UInt64(commitCount))
            let applied = decision.applied.json
            entries.append(
                BatchEntry(
                    push: push, decision: decision, appliedJSON: applied, appliedBytes: applied.serialized, isCommit: true,
                    commitIndex: commitCount))
            commitCount += 1
            bytes += push.bytes + decision.writes.values.reduce(0) { $0 + ($1?.count ?? 0) }
            keys.insert(key)
            perSession[push.sessionID, default: 0] += 1
        }
        guard commitCount > 0 else { return true }
        let batch = makeBatch(&entries, replica: replica, bytes: bytes)
        let commitEntries = entries.indices.filter { entries[$0].isCommit }
        inFlight = InFlightBatch(
            id: batch.id, sentAt: now, entries: entries, commitCount: commitCount, commitEntries: commitEntries,
            heldDiscards: entries.count - commitCount, knownHeadAtSend: knownRedisHead)
        counters.batches += 1
        counters.batchedCommits += UInt64(commitCount)
        actions.append(.commit(batch))
        return false
    }

    /// The queue's first push has a base the replica has not reached. Returns true while it waits;
    /// false once it was answered (and removed).
    mutating func waitForHead(_ push: PendingPush<Member>, _ now: UInt64, into actions: inout [PushAction<Member>])
        -> Bool
    {
        if headWait?.seq != push.seq { headWait = (push.seq, now + settings.headWaitNanos) }
        // A read issued after the push arrived that reached Redis's head below the push's base: the
        // client claims a clock this doc never had (a bogus or foreign base, or Redis lost history).
        let disproved = confirmedHead.map { $0.issuedAt >= push.receivedAt && $0.clock < push.base } ?? false
        let expired = now >= headWait!.deadline
        guard disproved || expired else {
            requestRead(now, into: &actions)
            return true
        }
        headWait = nil
        _ = queue.popFirst()
        if !disproved && knownRedisHead >= push.base {
            actions.append(.answer(refusal(push, .unavailable, "this node could not catch up with the doc; retry")))
        } else {
            actions.append(.answer(discard(push, reason: "invalid_base", conflicted: false)))
        }
        return false
    }

    /// Also keeps each commit's record hashes in its entry: the replica reuses them when it applies the
    /// commit (hashing a record means writing its canonical JSON: O(its size), and a shared text that
    /// grows is hashed on every append to it).
    mutating func makeBatch(_ entries: inout [BatchEntry<Member>], replica: DocReplica, bytes: Int) -> CommitBatch {
        var commits: [CommitBatch.Commit] = []
        var expectations: [String: PushDecision.Expectation] = [:]
        var writes: [String: CommitBatch.Write] = [:]
        // Checksums (issue 13): each commit's delta, from the hashes of the records as the batch's earlier
        // commits left them (the replica's for a first touch). Only the records a commit writes are hashed.
        var hashes: [String: DocChecksum?] = [:]
        for index in entries.indices where entries[index].isCommit {
            let entry = entries[index]
            var delta = DocChecksum.zero
            var recordHashes: [String: DocChecksum] = [:]
            for (id, value) in entry.decision.values {
                let old = hashes[id] ?? replica.hash(of: id)
                let new = value.map { DocChecksum.record(id: id, value: $0) }
                if let old { delta -= old }
                if let new {
                    delta += new
                    recordHashes[id] = new
                }
                hashes[id] = .some(new)
            }
            entries[index].recordHashes = recordHashes
            commits.append(
                CommitBatch.Commit(
                    sessionID: entry.push.sessionID, pushID: entry.push.pushID, ops: entry.appliedJSON, encodedOps: entry.appliedBytes,
                    sumDelta: delta))
            for (id, expectation) in entry.decision.expectations where writes[id] == nil {
                // Only a record's first touch is checked in Redis; earlier expectations on an unchanged
                // record describe the same state, the one naming a version is the stronger.
                switch (expectations[id], expectation) {
                case (nil, _), (.exists?, .version): expectations[id] = expectation
                default: break
                }
            }
            for (id, value) in entry.decision.writes {
                let wasMissing = writes[id]?.wasMissing ?? (replica.records[id] == nil)
                writes[id] = CommitBatch.Write(value: value, commitIndex: entry.commitIndex, wasMissing: wasMissing)
            }
        }
        var created = 0
        var removed = 0
        for write in writes.values {
            if write.wasMissing && write.value != nil { created += 1 }
            if !write.wasMissing && write.value == nil { removed += 1 }
        }
        var assumedVersions: [String: UInt64] = [:]
        for (id, expectation) in expectations where expectation == .exists { assumedVersions[id] = replica.version(of: id) }
        let id = nextBatchID
        nextBatchID += 1
        return CommitBatch(
            id: id, commits: commits, expectations: expectations, assumedVersions: assumedVersions, writes: writes,
            created: created, removed: removed, bytes: bytes)
    }

    /// The batch in Redis wrote nothing: its pushes go back to the front of the queue in their order, to
    /// be decided again (dropped if their member left; refused after `maxAttempts` lost races).
    mutating func requeueInFlight(countingAttempt: Bool, into actions: inout [PushAction<Member>]) {
        guard let batch = inFlight else { return }
        inFlight = nil
        var again: [PendingPush<Member>] = []
        for entry in batch.entries where !entry.delivered && !entry.abandoned {
            var push = entry.push
            if countingAttempt && entry.isCommit { push.attempts += 1 }
            if push.attempts >= settings.maxAttempts {
                actions.append(.answer(refusal(push, .unavailable, "too much contention on these records; retry")))
            } else {
                again.append(push)
            }
        }
        queue.prepend(again)
    }
}
