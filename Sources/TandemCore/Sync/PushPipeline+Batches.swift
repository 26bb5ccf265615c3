// Forming group commits: which queued pushes go in the next batch, decided against what (see `PushPipeline`).

extension PushPipeline {
    // MARK: Forming batches

    /// Starts the next batch if the doc can take one: the first when none is in Redis, or one pipelined
    /// behind those in Redis (see `chainStart`).
    mutating func pump(_ now: UInt64, into actions: inout [PushAction<Member>]) {
        // (Before anything that returns early: an expired linger never stays behind as a past deadline.)
        if let until = lingerUntil, queue.isEmpty || now >= until || queue.count >= settings.commitLingerPushes {
            endLinger(now)
        }
        guard delivery.isLoaded, !loadInFlight, !regressed, redisUp else { return }
        if inFlight.isEmpty, let wait = catchUp {
            if delivery.head >= wait.clock || now >= wait.deadline {
                // Caught up (or out of patience: deciding against what we have is still safe — Redis
                // re-checks — it may just lose the race again).
                catchUp = nil
            } else {
                return
            }
        }
        while !queue.isEmpty && inFlight.count < max(settings.maxBatchesInFlight, 1) {
            // Lingering: the pushes arriving until its end (or until enough wait) join this batch.
            if lingerUntil != nil { return }
            // Behind a batch in Redis, only once as many pushes wait as it holds (or a full batch): a
            // smaller one would cost a script call and its per-batch work for fewer commits than waiting
            // for the reply gathers. (Sent at once, a busy doc's batches shrank to ~1.4 pushes from ~3.9
            // at sync-20k, and each commit cost more where CPU is what runs out.) A hot doc's backlog
            // passes this at once, so its batches still go back to back.
            if let last = inFlight.last, queue.count < min(last.commitCount, settings.maxBatchPushes) { return }
            if !formBatch(now, into: &actions) { return }
        }
    }

    // MARK: Commit linger

    /// Smoothed gaps between queued pushes longer than this count as this: a doc that was quiet for an
    /// hour is busy again after a dozen pushes in quick succession, not after forty.
    static var longestArrivalGapNanos: Double { 1e9 }

    /// A push is queued now: the smoothed gap between pushes (weight 0.2, as the service-time averages).
    mutating func noteArrival(_ now: UInt64) {
        if let last = lastArrivalAt {
            let gap = min(Double(now >= last ? now - last : 0), Self.longestArrivalGapNanos)
            meanArrivalGapNanos = meanArrivalGapNanos.isFinite ? meanArrivalGapNanos + 0.2 * (gap - meanArrivalGapNanos) : gap
        }
        lastArrivalAt = now
    }

    /// The queue was empty and a push arrives: whether it lingers for others to join its batch, and how
    /// long. The rule, after PostgreSQL's `commit_delay`/`commit_siblings` and Kafka's `linger.ms` +
    /// `batch.size`:
    /// - only while the loop is busy (`loopLagNanos` at least `commitLingerMinLagNanos`): lingering trades
    ///   latency for CPU, and only a busy loop is short of CPU. An idle node commits a lone push at once;
    /// - only while the doc gets a push at least every two lingers on average: otherwise the linger would
    ///   most likely end with the push still alone (all of the wait, none of the saving);
    /// - for `commitLingerNanos` at most, and at most half of what its admission bound leaves (the bound
    ///   minus what it waited before the doc, the loop's admission margin — `push` passes the two summed as
    ///   `waitedNanos` — and what it would wait without lingering): the pushes that
    ///   join it are admitted against the linger's end (`estimatedWaitNanos`), and their wait is bounded
    ///   by the same `maxPushWaitNanos`. Less than a millisecond left: no linger;
    /// - cut short as soon as `commitLingerPushes` wait (`pump`).
    mutating func startLinger(now: UInt64, waitedNanos: UInt64, loopLagNanos: UInt64) {
        lingerUntil = nil
        let longest = Double(settings.commitLingerNanos)
        guard longest > 0, settings.commitLingerPushes > 1, loopLagNanos >= settings.commitLingerMinLagNanos,
            meanArrivalGapNanos <= 2 * longest
        else { return }
        let slack = (Double(settings.maxPushWaitNanos) - Double(waitedNanos) - estimatedWaitNanos(now: now)) / 2
        guard slack >= 1e6 else { return }
        lingerUntil = now + UInt64(min(longest, slack))
        lingerStartedAt = now
    }

    /// The linger ends (its deadline passed, enough pushes wait, or the queue emptied): counted, unless
    /// nothing is left of it to send. Its time counts up to its deadline at most: what the batch waits
    /// beyond it (a late timer, the reply of a batch ahead) is not the linger's.
    mutating func endLinger(_ now: UInt64) {
        guard let until = lingerUntil else { return }
        lingerUntil = nil
        guard !queue.isEmpty else { return }
        if queue.count >= settings.commitLingerPushes { counters.lingersFilled += 1 } else { counters.lingersExpired += 1 }
        let end = min(now, until)
        counters.lingerNanos += end >= lingerStartedAt ? end - lingerStartedAt : 0
    }

    /// Whether a batch may be decided now, and against what: the replica when nothing is in Redis; with
    /// batches in Redis, the state they will leave if each lands where it was predicted — only while that
    /// is still possible (none has replied, nothing else reached the replica since the chain began, no
    /// gap or wait is pending). Otherwise the next batch waits for their replies, as without pipelining.
    func chainStart(_ replica: DocReplica) -> (overlay: BatchOverlay, tail: CommitBatch.Predecessor?)? {
        var overlay = BatchOverlay(base: replica)
        guard let last = inFlight.last else { return (overlay, nil) }
        guard catchUp == nil, headWait == nil, delivery.gap == nil, inFlight.allSatisfy({ !$0.replied }),
            inFlight[0].predictedFirst == replica.head + 1
        else { return nil }
        for batch in inFlight {
            for entry in batch.entries where entry.isCommit {
                overlay.apply(entry.decision, pendingClock: batch.predictedFirst + UInt64(entry.commitIndex))
            }
        }
        return (overlay, CommitBatch.Predecessor(token: last.token, lastClock: last.predictedFirst + UInt64(last.commitCount) - 1))
    }

    /// Decides queued pushes into one batch. Returns false when the pipeline must wait (the first push
    /// waits for the head, or nothing can go behind the batches in Redis), true when it sent a batch or
    /// answered everything it took at once.
    mutating func formBatch(_ now: UInt64, into actions: inout [PushAction<Member>]) -> Bool {
        // (`pump` forms batches only for a loaded doc.)
        guard let replica = delivery.replica, let start = chainStart(replica) else { return false }
        var overlay = start.overlay
        let pipelined = start.tail != nil
        // The head the decisions start from: the replica's, plus what the batches in Redis will add.
        let startHead = start.tail?.lastClock ?? replica.head
        var entries: [BatchEntry<Member>] = []
        var commitCount = 0
        var bytes = 0
        // Sized for the batch at once: grown push by push, each resize rehashed what was in (~1,000
        // instructions per push at batches of 3-10; callgrind, issue 8 stop 28). Made at their size
        // (`init(minimumCapacity:)`, ~850 instructions) rather than by `reserveCapacity` on empty ones (the
        // standard library's generic code, ~1,100–1,500); for one push, grown by its insert (~420,
        // specialized) — the usual batch below a doc's capacity (callgrind, stop 30).
        let expected = min(queue.count, settings.maxBatchPushes) + inFlight.reduce(0) { $0 + $1.commitCount }
        entries.reserveCapacity(min(queue.count, settings.maxBatchPushes))
        var keys: Set<PushKey> = expected > 1 ? Set(minimumCapacity: expected) : []
        var perSession: [String: Int] = expected > 1 ? Dictionary(minimumCapacity: expected) : [:]
        // Behind batches in Redis, what is left of `maxBatchBytes`: a doc's batches in flight together are
        // no larger than one batch was (the script time a doc holds Redis for, and the patches one reply
        // burst puts in each member's outbound queue: 2 MiB at once closed a reading client as a slow
        // consumer at `--max-outbound-bytes` 1 MiB). Alone, a larger push still goes by itself.
        let budget = settings.maxBatchBytes - inFlight.reduce(0) { $0 + $1.bytes }
        for batch in inFlight {
            for entry in batch.entries where entry.isCommit && !entry.delivered {
                keys.insert(PushKey(sessionID: entry.push.sessionID, pushID: entry.push.pushID))
                perSession[entry.push.sessionID, default: 0] += 1
            }
        }
        var took = false
        while let push = queue.first {
            if push.base > replica.head {
                if commitCount > 0 { break }
                // Behind batches in Redis, their replies move the replica first.
                if pipelined { return took }
                if waitForHead(push, now, into: &actions) { return false }
                took = true
                continue
            }
            if headWait?.seq == push.seq { headWait = nil }  // the replica got there
            let key = PushKey(sessionID: push.sessionID, pushID: push.pushID)
            // The same session and id twice in Redis at once would both pass the duplicate check: the second
            // goes in a later batch, where Redis recognises it.
            if keys.contains(key) { break }
            if perSession[push.sessionID, default: 0] >= settings.maxSessionPushesPerBatch { break }
            if commitCount > 0 && (commitCount >= settings.maxBatchPushes || bytes + push.bytes > budget) { break }
            if pipelined && push.bytes > budget { return took }
            _ = queue.popFirst()
            took = true
            if push.base < replica.head && push.attempts == 0 { counters.concurrentPushes += 1 }
            let decision: PushDecision
            do {
                decision = try overlay.decide(ops: push.ops, base: push.base, limits: settings.limits, schema: schema)
            } catch {
                actions.append(.answer(refusal(push, error.code, error.message)))
                continue
            }
            if decision.action == .discard {
                if commitCount > 0 {
                    // It saw the batch's earlier commits: answer it right after the last of them.
                    entries.append(
                        BatchEntry(push: push, decision: decision, appliedJSON: .null, isCommit: false, commitIndex: commitCount - 1))
                } else if pipelined {
                    // It saw the commits of the batches in Redis: answer it right after the last of them.
                    let last = inFlight.count - 1
                    inFlight[last].entries.append(
                        BatchEntry(
                            push: push, decision: decision, appliedJSON: .null, isCommit: false,
                            commitIndex: inFlight[last].commitCount - 1))
                    inFlight[last].heldDiscards += 1
                } else {
                    actions.append(
                        .answer(
                            discard(
                                push, reason: decision.reason ?? "void", conflicted: decision.conflicted,
                                violation: decision.violation)))
                }
                continue
            }
            overlay.apply(decision, pendingClock: startHead + 1 + UInt64(commitCount))
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
        guard commitCount > 0 else { return took }
        var batch = makeBatch(&entries, before: start.overlay, bytes: bytes)
        batch.after = start.tail
        let commitEntries = entries.indices.filter { entries[$0].isCommit }
        inFlight.append(
            InFlightBatch(
                id: batch.id, sentAt: now, entries: entries, commitCount: commitCount, commitEntries: commitEntries,
                heldDiscards: entries.count - commitCount, knownHeadAtSend: knownRedisHead, predictedFirst: startHead + 1,
                token: batch.token, bytes: bytes))
        counters.batches += 1
        counters.batchedCommits += UInt64(commitCount)
        if pipelined { counters.pipelinedBatches += 1 }
        actions.append(.commit(batch))
        // (`pump` sends another behind it while the depth allows.)
        return true
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
    ///
    /// - Parameter before: the state the batch was decided against (the replica, plus the batches in Redis
    ///   ahead of it).
    mutating func makeBatch(_ entries: inout [BatchEntry<Member>], before: BatchOverlay, bytes: Int) -> CommitBatch {
        var commits: [CommitBatch.Commit] = []
        // Sized at once (about a record per push; see `formBatch`, also for `init(minimumCapacity:)`).
        let sized = entries.count > 1
        var expectations: [String: PushDecision.Expectation] = sized ? Dictionary(minimumCapacity: entries.count) : [:]
        var writes: [String: CommitBatch.Write] = sized ? Dictionary(minimumCapacity: entries.count) : [:]
        // Checksums (issue 13): each commit's delta, from the hashes of the records as the batch's earlier
        // commits left them (the replica's for a first touch). Only the records a commit writes are hashed.
        // Read only by a later commit of this batch: a lone commit with no batch in Redis before it keeps
        // none (the dictionary was a fifth of `makeBatch` then).
        let keepsHashes = sized || !inFlight.isEmpty
        var hashes: [String: DocChecksum?] = sized ? Dictionary(minimumCapacity: entries.count) : [:]
        commits.reserveCapacity(entries.count)
        for batch in inFlight {
            for entry in batch.entries where entry.isCommit {
                for (id, value) in entry.decision.values { hashes[id] = value == nil ? .some(nil) : entry.recordHashes[id] }
            }
        }
        for index in entries.indices where entries[index].isCommit {
            let entry = entries[index]
            var delta = DocChecksum.zero
            var recordHashes: [String: DocChecksum] = [:]
            for (id, value) in entry.decision.values {
                let old = hashes[id] ?? before.base.hash(of: id)
                let new = value.map { DocChecksum.record(id: id, value: $0) }
                if let old { delta -= old }
                if let new {
                    delta += new
                    recordHashes[id] = new
                }
                if keepsHashes { hashes[id] = .some(new) }
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
                let wasMissing = writes[id]?.wasMissing ?? (before.record(id) == nil)
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
        for (id, expectation) in expectations where expectation == .exists { assumedVersions[id] = before.version(of: id) }
        let id = nextBatchID
        nextBatchID += 1
        return CommitBatch(
            id: id, commits: commits, expectations: expectations, assumedVersions: assumedVersions, writes: writes,
            created: created, removed: removed, bytes: bytes, token: "\(tokenPrefix):\(id)")
    }

    /// The batch at `index` wrote nothing: its pushes, and those of every batch pipelined behind it (which
    /// Redis runs only behind it, so they write nothing either), go back to the front of the queue in
    /// their order, to be decided again (dropped if their member left; refused after `maxAttempts` lost
    /// races, counted for the batch that lost only).
    mutating func requeueInFlight(from index: Int, countingAttempt: Bool, into actions: inout [PushAction<Member>]) {
        guard index < inFlight.count else { return }
        var again: [PendingPush<Member>] = []
        for (k, batch) in inFlight[index...].enumerated() {
            if k > 0 { counters.pipelineBreaks += 1 }
            for entry in batch.entries where !entry.delivered && !entry.abandoned {
                var push = entry.push
                if countingAttempt && k == 0 && entry.isCommit { push.attempts += 1 }
                if push.attempts >= settings.maxAttempts {
                    actions.append(.answer(refusal(push, .unavailable, "too much contention on these records; retry")))
                } else {
                    again.append(push)
                }
            }
        }
        orphanBatches(from: index + 1)
        inFlight.removeSubrange(index...)
        // Those taken back have waited a round trip already: a linger of the pushes behind them ends.
        if !again.isEmpty { lingerUntil = nil }
        queue.prepend(again)
    }

    /// Batches taken back while in Redis: their replies are ignored, except that one that committed after
    /// all (it cannot, as their condition fails, but a reply is evidence) makes the node read the log.
    mutating func orphanBatches(from index: Int) {
        guard index < inFlight.count else { return }
        for batch in inFlight[index...] { orphans[batch.id] = batch.commitCount }
    }
}
