// Delivering commits in clock order and placing the answers among them (see `PushPipeline`).

extension PushPipeline {
    // MARK: Delivery

    /// Hands out dispatched commits: our own pushes' commits become the pusher's `result`.
    mutating func deliver(_ dispatches: [SyncDoc<Member>.Dispatch], now: UInt64, into actions: inout [PushAction<Member>]) {
        for dispatch in dispatches {
            let commit = dispatch.commit
            guard let (b, i) = matchInFlight(commit) else {
                actions.append(.deliver(commit, patchTo: dispatch.recipients, result: nil))
                continue
            }
            inFlight[b].deliveredCommits += 1
            let sentAt = inFlight[b].sentAt
            var patchTo = dispatch.recipients
            let (result, commitIndex) = Self.markDelivered(&inFlight[b].entries[i], commit, sentAt: sentAt, patchTo: &patchTo)
            actions.append(.deliver(commit, patchTo: patchTo, result: result))
            // At this commit's place in the stream (the cursor is already past the whole group).
            answerHeldDiscards(in: b, after: commitIndex, at: commit.clock, into: &actions)
        }
    }

    /// Marks `entry` delivered and takes its pusher out of `patchTo` (it gets the result instead).
    ///
    /// The entry is reached in place (`inout`): read through `inFlight[b].entries[i]` for each field and
    /// passed on to `result(for:)`, it was copied whole about five times per commit — the push, its ops,
    /// its decision and their dictionaries, ~450 instructions a copy and as much again to release them
    /// (callgrind, issue 8 stop 28).
    /// - Returns: the pusher's result (nil if its member is gone or not a recipient) and the entry's commit index.
    static func markDelivered(
        _ entry: inout BatchEntry<Member>, _ commit: CommitNotice, sentAt: UInt64, patchTo: inout [Member]
    ) -> (PushReply<Member>?, Int) {
        entry.delivered = true
        guard !entry.abandoned, let at = patchTo.firstIndex(of: entry.push.member) else { return (nil, entry.commitIndex) }
        patchTo.remove(at: at)
        return (result(for: entry, commit, sentAt: sentAt), entry.commitIndex)
    }

    /// The in-flight batch and entry a commit belongs to: by clock once Redis replied, else by node,
    /// session and push id (pub/sub may bring the commit before the reply).
    func matchInFlight(_ commit: CommitNotice) -> (batch: Int, entry: Int)? {
        guard !inFlight.isEmpty, commit.node == settings.nodeID else { return nil }
        func matches(_ entry: BatchEntry<Member>) -> Bool {
            entry.isCommit && !entry.delivered && entry.push.sessionID == commit.by && entry.push.pushID == commit.pushID
        }
        for (b, batch) in inFlight.enumerated() {
            if let first = batch.firstClock, commit.clock >= first, commit.clock - first < UInt64(batch.commitCount) {
                let i = batch.commitEntries[Int(commit.clock - first)]
                if matches(batch.entries[i]) { return (b, i) }
            }
        }
        // The reply has not come (or was lost): a commit of ours read from the log, recognised by session and id.
        for (b, batch) in inFlight.enumerated() {
            if let i = batch.entries.firstIndex(where: matches) { return (b, i) }
        }
        return nil
    }

    static func result(for entry: BatchEntry<Member>, _ commit: CommitNotice, sentAt: UInt64) -> PushReply<Member> {
        var action = entry.decision.action
        var applied: JSONValue? = action == .rebase ? entry.appliedJSON : nil
        // (A notice made from this entry's reply carries its bytes: equal without a deep comparison.)
        if commit.encodedOps.map({ $0 != entry.appliedBytes }) ?? (commit.ops != entry.appliedJSON) {
            // Matched by session and id but committed differently: an earlier copy of this push, committed
            // in a batch whose reply was lost. Answer with what was applied.
            action = commit.ops == entry.push.ops.json ? .commit : .rebase
            applied = action == .rebase ? commit.ops : nil
        }
        return PushReply(
            member: entry.push.member, pushID: entry.push.pushID,
            answer: .result(action: action, clock: commit.clock, applied: applied, reason: nil),
            receivedAtNanos: entry.push.receivedAt, conflicted: entry.decision.conflicted, sum: commit.sum,
            sentAtNanos: sentAt, waitedNanos: entry.push.waitedBeforeDoc, estimatedNanos: entry.push.estimatedWait)
    }

    /// - Parameter clock: the member's position when the answer is read (nil: its cursor).
    mutating func answerHeldDiscards(in b: Int, after commitIndex: Int, at clock: UInt64?, into actions: inout [PushAction<Member>]) {
        guard inFlight[b].heldDiscards > 0 else { return }
        for i in inFlight[b].entries.indices {
            let entry = inFlight[b].entries[i]
            guard !entry.isCommit, entry.commitIndex == commitIndex, !entry.delivered else { continue }
            inFlight[b].entries[i].delivered = true
            if !entry.abandoned {
                actions.append(
                    .answer(
                        discard(
                            entry.push, reason: entry.decision.reason ?? "void", conflicted: entry.decision.conflicted,
                            violation: entry.decision.violation, at: clock)))
            }
        }
    }

    /// Our commits that the replica passed without delivering them (a reload jumped over them) cannot
    /// be answered in order: `unavailable` (not acknowledged; a re-push is recognised as a duplicate).
    mutating func settleSkippedCommits(into actions: inout [PushAction<Member>]) {
        for b in inFlight.indices {
            guard let first = inFlight[b].firstClock, inFlight[b].deliveredCommits < inFlight[b].commitCount else { continue }
            for k in 0..<inFlight[b].commitCount where first + UInt64(k) <= delivery.head {
                let i = inFlight[b].commitEntries[k]
                guard !inFlight[b].entries[i].delivered else { continue }
                inFlight[b].entries[i].delivered = true
                inFlight[b].deliveredCommits += 1
                if !inFlight[b].entries[i].abandoned {
                    actions.append(
                        .answer(
                            refusal(inFlight[b].entries[i].push, .unavailable, "the doc was reloaded before this push was answered; retry")))
                }
                answerHeldDiscards(in: b, after: k, at: nil, into: &actions)
            }
        }
    }

    /// Batches replied and delivered in full leave (in order: a later one cannot finish first, its
    /// commits come after).
    mutating func finishBatchIfDone() {
        // Usually the one batch in Redis is done: emptied keeping the array's storage (`removeAll(where:)`
        // went through the generic `replaceSubrange`, ~2,700 instructions per reply, and the next batch's
        // append allocated the array again).
        if inFlight.count == 1, inFlight[0].isDone {
            inFlight.removeAll(keepingCapacity: true)
        } else {
            inFlight.removeAll { $0.isDone }
        }
    }

    // MARK: Reads

    mutating func noteGap(_ now: UInt64) {
        if delivery.gap == nil {
            gapSeenAt = nil
        } else if gapSeenAt == nil {
            gapSeenAt = now
        }
    }

    mutating func requestRead(_ now: UInt64, into actions: inout [PushAction<Member>]) {
        guard readIssuedAt == nil, delivery.isLoaded, !loadInFlight, redisUp else { return }
        readIssuedAt = now
        counters.logReads += 1
        actions.append(.readLog(from: delivery.head + 1, count: settings.logReadCount))
    }

    mutating func requestReload(into actions: inout [PushAction<Member>]) {
        guard !loadInFlight else { return }
        loadInFlight = true
        actions.append(.reload)
    }

    // MARK: Answers

    /// A discard at the member's position: `clock`, or its cursor (correct whenever no delivery of the
    /// same call comes after the answer).
    func discard(
        _ push: PendingPush<Member>, reason: String, conflicted: Bool, violation: RecordViolation? = nil, at clock: UInt64? = nil
    ) -> PushReply<Member> {
        PushReply(
            member: push.member, pushID: push.pushID,
            answer: .result(
                action: .discard, clock: clock ?? delivery.cursor(of: push.member) ?? delivery.head, applied: nil, reason: reason),
            receivedAtNanos: push.receivedAt, conflicted: conflicted, violation: violation)
    }

    func refusal(_ push: PendingPush<Member>, _ code: ErrorCode, _ message: String, retryAfterMs: UInt64? = nil)
        -> PushReply<Member>
    {
        PushReply(
            member: push.member, pushID: push.pushID, answer: .refusal(code, message, retryAfterMs: retryAfterMs),
            receivedAtNanos: push.receivedAt, conflicted: false)
    }

    mutating func refuseQueued(_ message: String, into actions: inout [PushAction<Member>]) {
        headWait = nil
        lingerUntil = nil  // (nothing left to linger for: not counted as a linger)
        while let push = queue.popFirst() {
            actions.append(.answer(refusal(push, .unavailable, message)))
        }
    }
}
