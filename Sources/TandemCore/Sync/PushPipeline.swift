/// Document sync of one doc on one node: ordered delivery of commits and the push pipeline, as a pure
/// state machine (time passed in, no I/O, returns actions for the owner to carry out, in order).
///
/// Why one machine for both: a pusher's `result` must sit exactly at its clock among the `patch`es
/// everyone gets, so answering pushes and delivering commits are one decision, made in one place. The
/// ordered delivery itself stays in `SyncDoc` (which this wraps); this type adds the pushes.
///
/// The pipeline, per doc:
/// - **Admission.** A push is queued only if its estimated wait before its commit is within
///   `maxPushWaitNanos` (see `ServiceTimeModel`); otherwise it is refused at once, `unavailable` with a
///   jittered `retryAfterMs` that grows with the backlog. Viewers get `discard`/`read_only`; with Redis
///   unreachable, pushes get `unavailable`.
/// - **Group commit.** Everything queued (up to `maxBatchPushes` / `maxBatchBytes`) is decided in arrival
///   order against the replica — each push against the state the previous ones of the batch produced
///   (`BatchOverlay`) — and committed in one script call that re-checks the decisions atomically.
/// - **Pipelining.** Up to `maxBatchesInFlight` batches of a doc are in Redis at once. The next batch is
///   decided against the state the ones in Redis will leave (the replica plus their decisions, at the
///   clocks they will get if they land where predicted) and sent behind them, conditional on Redis's
///   head being the last one's predicted tail and on that batch having written it (its token). If a batch
///   ahead loses its race, fails, or lands elsewhere (another node committed first), those behind it
///   write nothing and are taken back and decided again with it: never half-applied. Results and
///   patches still go out in clock order, each exactly once (delivery does not care which batch a
///   commit came from). A chain is only extended while it can still hold: none of its batches has
///   replied, nothing else reached the replica since it began, no gap or wait is pending.
/// - **Commit linger.** While the loop is busy (its lag at least `commitLingerMinLagNanos`) and the doc
///   gets pushes often (their smoothed gap at most twice `commitLingerNanos`), the first push of an empty
///   queue waits up to `commitLingerNanos` — less if its admission bound would be at risk — for others to
///   join its batch, or until `commitLingerPushes` wait. A batch costs about as much as 2.5 commits more
///   (docs/benchmarks.md, issue 8): at a batch of one the busy node spends most of its CPU per batch, and
///   the wait is what it buys back. Never on an idle node or doc: a lone push commits at once.
/// - **Answers in clock order.** A commit/rebase is answered when its commit is delivered in clock
///   order (from the script's reply or from pub/sub, whichever comes first), so the pusher's `result`
///   takes the place of its `patch`. A void push is answered `discard` right after the commit before it
///   in the batch (or at once if none), at the member's position in the stream.
/// - **Waiting for the head.** A push whose base is ahead of the replica (the client saw a newer clock
///   on another node) waits, with the queue behind it, until the replica gets there: the log is read at
///   once; a read issued after the push arrived that ends below its base proves the base was never a
///   clock of this doc (`invalid_base` at once: otherwise a client could stall the doc's queue for
///   `headWaitNanos` with every push that claims a huge base). `headWaitNanos` bounds the wait.
/// - **Lost races.** A batch whose expectations no longer hold in Redis (another node committed to the
///   same records first), that would exceed the doc's record limit, or that contains a re-push of a
///   committed push id, writes nothing. The pipeline waits for the replica to reach the head Redis
///   reported, then decides the batch's pushes again — never half-applies it. After `maxAttempts` lost
///   races a push is refused `unavailable`; re-pushes are answered `discard`/`duplicate`.
/// - **Departures.** Pushes of a member that detached (left, lost its socket, re-joined, or its session
///   was taken over) are dropped unanswered and never committed unless already in Redis: the client
///   re-sends them after it reconnects, and committing both copies would apply them twice.
///
/// Every public entry point carries an exported specialization for `ObjectIdentifier`, the member type the
/// server uses: cross-module optimization does not specialize functions this size, and the generic code
/// (type metadata look-ups, generic dictionary and array operations on every push and commit) was the
/// largest share of the pipeline's cost per commit in the callgrind profile (docs/benchmarks.md).
public struct PushPipeline<Member: Hashable> {
    public let settings: PushPipelineSettings
    // The state below is internal rather than private only because the pipeline's extensions
    // (PushPipeline+Batches, PushPipeline+Delivery) live in files of their own; nothing else touches it.
    /// Ordered delivery and the replica (read it for catch-up and status; change it only through here).
    public internal(set) var delivery: SyncDoc<Member>
    public internal(set) var model: ServiceTimeModel
    public internal(set) var counters = PushPipelineCounters()
    /// The record schema of this doc (`--schema-dir`), if one applies: every push is decided against it.
    /// Set by the owner when the doc loads and when the schemas are reloaded.
    public var schema: DocSchema?

    var random: SplitMix64
    /// Refused pushes not yet absorbed at the doc's capacity (see `retryAfterMs`), as of `overflowAt`.
    var overflow = 0.0
    var overflowAt: UInt64 = 0
    var queue = PushQueue<Member>()
    /// The batches in Redis, in the order sent (which is the order Redis runs them).
    var inFlight: [InFlightBatch<Member>] = []
    /// Batches taken back while in Redis (`orphanBatches`), by id, with their commit counts: a reply for
    /// one is not acted on beyond reading the log when it says it committed.
    var orphans: [UInt64: Int] = [:]
    /// Prefix of batch tokens: unique per pipeline (a node restarted with the same id starts batch ids at 1
    /// again, and a token must never match an older batch's).
    let tokenPrefix: String
    var nextBatchID: UInt64 = 1
    /// When the last batch's reply came (a pipelined batch's time in Redis starts there).
    var lastReplyAt: UInt64 = 0
    var nextSeq: UInt64 = 1
    var redisUp = true
    var loadInFlight = false
    /// The next load replaces the replica rather than only moving it forward (nil: it only moves forward).
    var replacement: Replacement?
    /// Redis's clock of the doc went back: nothing is delivered or decided until the reload replaces the
    /// replica.
    var regressed: Bool { replacement == .regression }
    /// A read of the whole doc is in flight (a reload): nothing to compare with Redis until it lands.
    public var reloadPending: Bool { loadInFlight }

    /// A gap-fill read in Redis, issued at this time.
    var readIssuedAt: UInt64?
    /// A complete read (it reached Redis's head) issued at `issuedAt` found the head at `clock`.
    var confirmedHead: (clock: UInt64, issuedAt: UInt64)?
    /// The highest clock Redis is known to have (commits seen, heads reported).
    public internal(set) var knownRedisHead: UInt64 = 0
    /// When the current gap in the ordered stream was first seen.
    var gapSeenAt: UInt64?
    /// The queue's first push waits for the replica to reach its base.
    var headWait: (seq: UInt64, deadline: UInt64)?
    /// After a lost race: decide again once the replica reaches `clock` (or at `deadline` regardless).
    var catchUp: (clock: UInt64, since: UInt64, deadline: UInt64)?
    /// The queue's first push lingers until then, so that the pushes arriving meanwhile join its batch
    /// (`startLinger`); since `lingerStartedAt`.
    var lingerUntil: UInt64?
    var lingerStartedAt: UInt64 = 0
    /// When the last push was queued, and the smoothed gap between queued pushes (infinite until two
    /// were): whether another push is likely to come within a linger.
    var lastArrivalAt: UInt64?
    var meanArrivalGapNanos = Double.infinity

    /// - Parameter randomSeed: seeds the retry-after jitter (fixed in tests, random in the server).
    public init(settings: PushPipelineSettings, randomSeed: UInt64) {
        self.settings = settings
        self.delivery = SyncDoc(retention: settings.retention)
        self.model = ServiceTimeModel(
            roundTripNanos: settings.initialRoundTripNanos, perPushNanos: settings.initialPerPushNanos,
            weight: settings.serviceTimeWeight, maxBatch: settings.maxBatchPushes)
        self.random = SplitMix64(seed: randomSeed)
        self.tokenPrefix = settings.nodeID + "/" + String(random.next(), radix: 36)
    }

    // MARK: Queries

    public var isLoaded: Bool { delivery.isLoaded }
    public var head: UInt64 { delivery.head }
    /// Pushes waiting for a batch (not counting the batch in Redis).
    public var queuedCount: Int { queue.count }
    /// Pushes in the batches in Redis.
    public var inFlightCount: Int { inFlight.reduce(0) { $0 + $1.entries.count } }
    /// Group commits in Redis.
    public var batchesInFlight: Int { inFlight.count }
    /// Nothing in progress: the doc can be dropped once it has no members.
    public var isIdle: Bool { queue.isEmpty && inFlight.isEmpty && orphans.isEmpty && readIssuedAt == nil && !loadInFlight }

    /// When `tick` has something to do next (a read after a gap's grace, a wait's deadline), if anything.
    ///
    /// Only deadlines `tick` can act on count: none while Redis is down or the doc is being (re)loaded, no
    /// read deadline while a read is in flight, no wait deadline while a batch is in Redis (its reply
    /// decides next). So after `tick(now)` this is nil or later than `now`: an owner that sets a timer
    /// for it never spins. Inputs that end those states return actions, after which the owner asks again.
    public var nextDeadline: UInt64? {
        guard delivery.isLoaded, redisUp, !loadInFlight else { return nil }
        // The earliest of them, without an array (asked after every input: `scheduleSyncTimer`).
        var earliest: UInt64?
        func consider(_ deadline: UInt64) { earliest = min(earliest ?? deadline, deadline) }
        if readIssuedAt == nil {
            if let seen = gapSeenAt { consider(seen + settings.gapGraceNanos) }
            if let catchUp { consider(catchUp.since + settings.gapGraceNanos) }
        }
        if inFlight.isEmpty {
            if let catchUp {
                consider(catchUp.deadline)
            } else if let headWait {
                // (A lost race's wait comes first: `pump` looks at the queue only after it.)
                consider(headWait.deadline)
            }
        }
        // (While the doc's batches in Redis fill the depth, their replies decide next: `pump` ends an
        // expired linger then.)
        if let lingerUntil, !queue.isEmpty, inFlight.count < max(settings.maxBatchesInFlight, 1) {
            consider(lingerUntil)
        }
        return earliest
    }

    /// The estimated wait of a push arriving now, in nanoseconds (what admission compares with
    /// `maxPushWaitNanos`).
    ///
    /// A batch in Redis that is already late is taken to need as long again as it is late: a stalled
    /// Redis (a slow fsync, a long script elsewhere, a pause) is not assumed to recover at once, so the
    /// pushes that arrive meanwhile are refused, and told to come back later the longer the stall lasts,
    /// rather than queued behind it. (Continuous at the due time: a batch a little late adds a little.)
    /// Batches pipelined behind it add their per-push work (their round trips overlap the first's).
    @_specialize(exported: true, where Member == ObjectIdentifier)
    public func estimatedWaitNanos(now: UInt64) -> Double {
        var remaining = 0.0
        if let first = inFlight.first, !first.replied {
            let due = Double(first.sentAt) + model.serviceNanos(size: first.commitCount)
            remaining = abs(due - Double(now))
        }
        for batch in inFlight.dropFirst() where !batch.replied {
            remaining += Double(batch.commitCount) * model.effectivePerPushNanos
        }
        // A lingering queue goes no sooner than its linger ends (and no later than the batch ahead allows).
        if let lingerUntil, !queue.isEmpty, lingerUntil > now { remaining = max(remaining, Double(lingerUntil - now)) }
        return model.waitNanos(ahead: queue.count, maxBatch: settings.maxBatchPushes, remainingNanos: remaining)
    }

    // MARK: Loading

    /// The doc as read from Redis (first load, or a reload the pipeline asked for).
    /// - Parameter attaching: members that joined while the doc could not be read, with their `since`:
    ///   they get their catch-up before anything is decided, so answers to pushes they queued meanwhile
    ///   follow it. Queued pushes of anyone else are refused `not_joined`.
    @_specialize(exported: true, where Member == ObjectIdentifier)
    public mutating func load(
        _ replica: DocReplica, retainedFrom: UInt64, attaching: [(Member, UInt64?)] = [], now: UInt64
    ) -> [PushAction<Member>] {
        var actions: [PushAction<Member>] = []
        let wasLoaded = delivery.isLoaded
        let before = delivery.head
        loadInFlight = false
        let pending = replacement
        replacement = nil
        if pending == .regression && wasLoaded {
            replaceAfterRegression(replica, retainedFrom: retainedFrom, now: now, into: &actions)
            return actions
        }
        knownRedisHead = max(knownRedisHead, replica.head)
        let replacing = wasLoaded && pending == .resync && replica.head >= before
        deliver(delivery.load(replica, retainedFrom: retainedFrom, replacing: replacing), now: now, into: &actions)
        if wasLoaded && (delivery.head > before || replacing) {
            // The replica jumped over commits it never delivered. Our own among them cannot be answered in
            // order any more; every member restarts from a snapshot.
            settleSkippedCommits(into: &actions)
            for member in delivery.members {
                actions.append(.catchUp(member, delivery.attach(member, since: nil)))
            }
        }
        for (member, since) in attaching {
            actions.append(.catchUp(member, delivery.attach(member, since: since)))
        }
        if !wasLoaded {
            let sync = delivery
            let strays = queue.removeAll { sync.cursor(of: $0.member) == nil }
            for push in strays { actions.append(.answer(refusal(push, .notJoined, "join the doc first"))) }
        }
        noteGap(now)
        finishBatchIfDone()
        pump(now, into: &actions)
        return actions
    }

    /// The replica's checksum differs from Redis's (issue 13): read the doc again, replacing the replica
    /// even at the same head; every member restarts from a snapshot of what Redis holds.
    public mutating func resync(now: UInt64) -> [PushAction<Member>] {
        var actions: [PushAction<Member>] = []
        guard delivery.isLoaded else { return actions }
        // (A regression's replacement, if one is pending, is the resync this asks for.)
        if replacement == nil { replacement = .resync }
        requestReload(into: &actions)
        return actions
    }

    /// Reading the doc failed (Redis unreachable). Without a replica there is nothing to decide against:
    /// the queued pushes are refused rather than kept unanswered for the length of the outage.
    @_specialize(exported: true, where Member == ObjectIdentifier)
    public mutating func loadFailed(now: UInt64) -> [PushAction<Member>] {
        var actions: [PushAction<Member>] = []
        loadInFlight = false
        if !delivery.isLoaded { refuseQueued("Redis is unreachable; retry the push", into: &actions) }
        return actions
    }

    // MARK: Members

    /// A member joins with `since`. A member that was attached already starts over: its pushes are
    /// dropped like a departed member's (it is re-joining; its client re-sends what it still needs).
    @_specialize(exported: true, where Member == ObjectIdentifier)
    public mutating func attach(_ member: Member, since: UInt64?, now: UInt64) -> (SyncDoc<Member>.CatchUp, [PushAction<Member>]) {
        var actions: [PushAction<Member>] = []
        dropPushes(of: member)
        let catchUp = delivery.attach(member, since: since)
        pump(now, into: &actions)
        return (catchUp, actions)
    }

    /// The member received commits up to `through` from the Redis log.
    @_specialize(exported: true, where Member == ObjectIdentifier)
    public mutating func continueCatchUp(_ member: Member, through: UInt64) -> SyncDoc<Member>.CatchUp? {
        delivery.continueCatchUp(member, through: through)
    }

    /// A member is gone (left, lost its socket, taken over): its pushes not yet in Redis are dropped.
    @_specialize(exported: true, where Member == ObjectIdentifier)
    public mutating func detach(_ member: Member, now: UInt64) -> [PushAction<Member>] {
        var actions: [PushAction<Member>] = []
        dropPushes(of: member)
        delivery.detach(member)
        pump(now, into: &actions)
        return actions
    }

    mutating func dropPushes(of member: Member) {
        if let headWait, queue.first?.seq == headWait.seq, queue.first?.member == member { self.headWait = nil }
        queue.removeAll { $0.member == member }
        for b in inFlight.indices {
            for i in inFlight[b].entries.indices where inFlight[b].entries[i].push.member == member {
                inFlight[b].entries[i].abandoned = true
            }
        }
    }

    // MARK: Pushes

    /// A push from a live member.
    /// - Parameters:
    ///   - sessionID: the pusher's session (commits carry it as `by`; re-pushes are recognised by it).
    ///   - bytes: size of the push's ops as received (batch size accounting).
    ///   - readOnly: the member is a viewer.
    ///   - waitedNanos: how long it waited in the node before its doc saw it (see `overloadRefusal`).
    ///   - loopLagNanos: the smoothed lag of the doc's event loop (`LoopLoad.lagNanos`): whether lingering
    ///     for a larger batch pays (see `startLinger`).
    ///   - marginNanos: the loop's admission margin (`LoopLoad.marginNanos`), kept free of the wait bound.
    @_specialize(exported: true, where Member == ObjectIdentifier)
    public mutating func push(
        from member: Member, sessionID: String, pushID: JSONValue, base: UInt64, ops: Ops, bytes: Int, readOnly: Bool,
        now: UInt64, waitedNanos: UInt64 = 0, loopLagNanos: UInt64 = 0, marginNanos: UInt64 = 0
    ) -> [PushAction<Member>] {
        var actions: [PushAction<Member>] = []
        var pending = PendingPush(
            seq: nextSeq, member: member, sessionID: sessionID, pushID: pushID, base: base, ops: ops, bytes: bytes,
            receivedAt: now)
        nextSeq += 1
        if delivery.isLoaded && delivery.cursor(of: member) == nil {
            // Not live (never attached, or still catching up): its answer could not be placed in its stream.
            // The shard holds a joining member's pushes until it is live; this is the backstop.
            actions.append(.answer(refusal(pending, .notJoined, "join the doc first")))
            return actions
        }
        if readOnly {
            actions.append(.answer(discard(pending, reason: "read_only", conflicted: false)))
            return actions
        }
        guard redisUp else {
            actions.append(.answer(refusal(pending, .unavailable, "Redis is unreachable; retry the push")))
            return actions
        }
        let ahead = estimatedWaitNanos(now: now)
        if let busy = overloadRefusal(now: now, waitedNanos: waitedNanos, marginNanos: marginNanos, ahead: ahead) {
            actions.append(.answer(refusal(pending, .unavailable, busy.message, retryAfterMs: busy.retryAfterMs)))
            return actions
        }
        pending.waitedBeforeDoc = waitedNanos
        pending.estimatedWait = UInt64(max(ahead, 0))
        noteArrival(now)
        if queue.isEmpty { startLinger(now: now, waitedNanos: waitedNanos &+ marginNanos, loopLagNanos: loopLagNanos) }
        queue.append(pending)
        pump(now, into: &actions)
        return actions
    }

    /// An editor's push the doc is too busy to take, refused at once — the same rule as `push` applies,
    /// without the push's ops: an owner can call this before parsing them, so that refusing costs little
    /// when a doc is overloaded. Nil when `push` would not refuse it as busy (then call `push`).
    @_specialize(exported: true, where Member == ObjectIdentifier)
    public mutating func refuseIfBusy(
        from member: Member, pushID: JSONValue, now: UInt64, waitedNanos: UInt64 = 0, marginNanos: UInt64 = 0
    ) -> [PushAction<Member>]? {
        guard redisUp, delivery.cursor(of: member) != nil,
            let busy = overloadRefusal(now: now, waitedNanos: waitedNanos, marginNanos: marginNanos)
        else { return nil }
        let reply = PushReply(
            member: member, pushID: pushID, answer: .refusal(.unavailable, busy.message, retryAfterMs: busy.retryAfterMs),
            receivedAtNanos: now, conflicted: false)
        return [.answer(reply)]
    }

    /// Admission (with Redis up): the refusal for a push arriving now, if the queue is full or its wait
    /// would pass `maxPushWaitNanos`; counts it.
    ///
    /// - Parameter waitedNanos: how long the push has already waited inside the node before its doc saw
    ///   it (`LoopLoad.waitedBeforeDoc`: since its message was read, the hop to the shard's loop and the
    ///   tasks queued on it, plus the loop's lag for its time in the socket). It counts against the same
    ///   bound: at saturation that, not the doc's queue, was where accepted pushes lost their time
    ///   (sync-20k: every doc's estimate and the loop's lag under their bounds, p99 796 ms).
    ///   A push with nothing ahead of it is still taken however long it waited: the loop's own bound
    ///   (`LoopLoad.isLagging`) is what refuses for a saturated loop alone, and with a small bound on a
    ///   busy host the time before the doc alone could pass it forever (no push would ever be taken).
    /// - Parameter marginNanos: kept free of the bound (`LoopLoad.marginNanos`: how much longer than
    ///   estimated accepted pushes have lately spent in their docs, at a high quantile), so that what is
    ///   taken is answered within the bound in fact, not only by the estimate.
    /// - Parameter ahead: `estimatedWaitNanos(now:)`, if the caller has it already.
    mutating func overloadRefusal(
        now: UInt64, waitedNanos: UInt64 = 0, marginNanos: UInt64 = 0, ahead known: Double? = nil
    ) -> (message: String, retryAfterMs: UInt64)? {
        let full = queue.count >= settings.maxQueuedPushes
        let limit = Double(settings.maxPushWaitNanos)
        let margin = min(Double(marginNanos), limit)
        let bound = limit - margin
        let waited = Double(waitedNanos)
        // Before the first load there is nothing to measure against: the queue bound applies alone. A push
        // with nothing ahead of it is always taken: refusing it would not shorten anyone's wait, and its
        // round trip is what keeps the model current after a slow spell (otherwise one outlier could have
        // the doc refuse everything from then on).
        let measured = delivery.isLoaded && !(queue.isEmpty && inFlight.isEmpty)
        guard full || measured else { return nil }
        let ahead = known ?? estimatedWaitNanos(now: now)
        let wait = waited + ahead
        guard full || wait > bound else { return nil }
        let message: String
        if full {
            counters.queueFullRefusals += 1
            message = "more than \(settings.maxQueuedPushes) pushes queued for this doc; retry"
        } else if wait <= limit {
            counters.marginRefusals += 1
            message =
                "this node is busy: the push would wait about \(Int(wait / 1e6)) ms, and lately accepted pushes took up to "
                + "\(Int(margin / 1e6)) ms longer than estimated (limit \(settings.maxPushWaitNanos / 1_000_000) ms, --max-push-wait-ms); retry"
        } else if ahead > limit || waitedNanos == 0 {
            counters.overloadRefusals += 1
            message =
                "this doc is busy: the push would wait about \(Int(wait / 1e6)) ms (limit \(settings.maxPushWaitNanos / 1_000_000) ms); retry"
        } else {
            counters.delayedRefusals += 1
            message =
                "this node is busy: the push waited \(Int(waited / 1e6)) ms before its doc could take it and would wait about "
                + "\(Int(wait / 1e6)) ms in all (limit \(settings.maxPushWaitNanos / 1_000_000) ms, --max-push-wait-ms); retry"
        }
        return (message, retryAfterMs(wait: wait + margin, now: now))
    }

    /// When a refused push should come back.
    ///
    /// Admission keeps the queue at about `maxPushWaitNanos` of work, so the queue alone says little about
    /// how overloaded the doc is: the refused pushes are the backlog. They are counted in `overflow`, a
    /// virtual queue that drains at the doc's capacity (a full batch per its service time): the k-th push
    /// refused in a burst is told to come back once the k − 1 before it could have been served, plus what
    /// the real queue needs beyond the bound — spread ×1–2 so they do not return together.
    mutating func retryAfterMs(wait: Double, now: UInt64) -> UInt64 {
        let batch = Double(max(settings.maxBatchPushes, 1))
        let capacityPerNano = batch / max(model.serviceNanos(size: settings.maxBatchPushes), 1)
        overflow = max(0, overflow - Double(now &- overflowAt) * capacityPerNano) + 1
        overflowAt = now
        let base = max(wait - Double(settings.maxPushWaitNanos), 0) + overflow / capacityPerNano
        let jittered = max(base, 1e6) * (1 + Double(random.next() >> 11) / Double(1 << 53))
        return min(max(UInt64(jittered / 1e6), 1), settings.maxRetryAfterMs)
    }

    // MARK: Redis

    /// Redis answered (or failed) the batch `batchID`.
    /// - Parameter failureMessage: for `.failed`, what the pushers are told (default: Redis unreachable).
    /// - Parameter sums: for `.committed`, the doc's checksum after each commit as the script computed it
    ///   (empty when Redis did not know the checksum before the batch).
    @_specialize(exported: true, where Member == ObjectIdentifier)
    public mutating func commitReplied(
        batchID: UInt64, _ outcome: CommitBatchOutcome, now: UInt64, failureMessage: String? = nil, sums: [DocChecksum] = []
    ) -> [PushAction<Member>] {
        var actions: [PushAction<Member>] = []
        if let count = orphans.removeValue(forKey: batchID) {
            // Taken back while in Redis; it cannot have committed (its condition failed), but if it says
            // so, what it wrote is read from the log like another node's commits.
            if case .committed(let first, _) = outcome, !regressed {
                knownRedisHead = max(knownRedisHead, first + UInt64(count) - 1)
                if knownRedisHead > delivery.head { requestRead(now, into: &actions) }
            }
            return actions
        }
        // (No local copy of the batch: its entries are updated in place as commits are delivered, and a
        // second reference would make each reply copy them.)
        guard let b = inFlight.firstIndex(where: { $0.id == batchID }), !inFlight[b].replied else { return actions }
        let sentAt = inFlight[b].sentAt
        let commitCount = inFlight[b].commitCount
        // A pipelined batch's time in Redis starts when the one ahead of it replied (it ran right after):
        // the model learns the service time of a batch as the doc sees it, one reply after the other.
        let startedAt = max(sentAt, lastReplyAt)
        lastReplyAt = now
        if outcome != .failed { model.observe(size: commitCount, nanos: now &- startedAt) }
        // Redis ran the batch on less than it held when the batch was sent: it lost commits.
        let knownAtSend = inFlight[b].knownHeadAtSend
        switch outcome {
        case .committed(let first, _) where first <= knownAtSend || regressed:
            // Not delivered onto a replica Redis no longer agrees with: the reload settles them.
            inFlight[b].replied = true
            inFlight[b].firstClock = first
            if first <= knownAtSend { clockWentBack(to: first + UInt64(commitCount) - 1, into: &actions) }
            return actions
        case .conflict(let head), .tooLarge(let head, _), .duplicate(let head, _):
            if head < knownAtSend { clockWentBack(to: head, into: &actions) }
        case .committed, .failed:
            break
        }
        switch outcome {
        case .committed(let first, let atMs):
            inFlight[b].replied = true
            inFlight[b].firstClock = first
            knownRedisHead = max(knownRedisHead, first + UInt64(commitCount) - 1)
            if first != inFlight[b].predictedFirst && b + 1 < inFlight.count {
                // It landed after another node's commit: the batches behind it were decided against a
                // state Redis never had, and write nothing. Decide them again.
                counters.pipelineBreaks += 1  // (requeueInFlight counts those behind the first it takes)
                requeueInFlight(from: b + 1, countingAttempt: false, into: &actions)
            }
            // Our own commits go into the ordered stream now, from the reply: this node does not read them
            // back from pub/sub.
            for k in 0..<commitCount {
                let clock = first + UInt64(k)
                guard clock > delivery.head else { continue }
                let i = inFlight[b].commitEntries[k]
                let notice = inFlight[b].entries[i].notice(
                    clock: clock, node: settings.nodeID, atMs: atMs, sum: k < sums.count ? sums[k] : nil)
                deliver(delivery.receive(notice), now: now, into: &actions)
            }
            settleSkippedCommits(into: &actions)
            noteGap(now)
        case .conflict(let head), .tooLarge(let head, _):
            counters.batchConflicts += 1
            knownRedisHead = max(knownRedisHead, head)
            requeueInFlight(from: b, countingAttempt: true, into: &actions)
            if head > delivery.head && !regressed { catchUp = (head, now, now + settings.headWaitNanos) }
        case .duplicate(let head, let clocks):
            counters.batchConflicts += 1
            knownRedisHead = max(knownRedisHead, head)
            for commitIndex in clocks.keys.sorted() where commitIndex >= 0 && commitIndex < commitCount {
                let i = inFlight[b].commitEntries[commitIndex]
                guard !inFlight[b].entries[i].delivered else { continue }
                inFlight[b].entries[i].delivered = true
                if !inFlight[b].entries[i].abandoned {
                    actions.append(.answer(discard(inFlight[b].entries[i].push, reason: "duplicate", conflicted: false)))
                }
            }
            requeueInFlight(from: b, countingAttempt: false, into: &actions)
        case .failed:
            // It may have run or not; those behind it ran only if it did. Neither is acknowledged: their
            // pushers re-push (a copy Redis has is recognised as a duplicate), and whatever did commit is
            // read from the log (the owner asks Redis for its head).
            let message = failureMessage ?? "Redis is unreachable; the push was not acknowledged, retry it"
            for batch in inFlight[b...] {
                for entry in batch.entries where !entry.delivered && !entry.abandoned {
                    actions.append(.answer(refusal(entry.push, .unavailable, message)))
                }
            }
            counters.pipelineBreaks += UInt64(inFlight.count - b - 1)
            orphanBatches(from: b + 1)
            inFlight.removeSubrange(b...)
        }
        finishBatchIfDone()
        pump(now, into: &actions)
        return actions
    }

    /// Commits from pub/sub (one, or a batch in clock order), any node's, ours included.
    @_specialize(exported: true, where Member == ObjectIdentifier)
    public mutating func receive(_ commits: [CommitNotice], now: UInt64) -> [PushAction<Member>] {
        var actions: [PushAction<Member>] = []
        // Redis's history went back and the reload that replaces the replica is pending: a commit now
        // would be delivered on top of commits Redis lost (members would apply it to the wrong state).
        // The reload's snapshot brings what Redis holds; later commits are read as a gap after it.
        if regressed { return actions }
        for commit in commits {
            if delivery.contradicts(commit) {
                // Another commit at a clock we delivered: Redis's history was rewritten under us.
                clockWentBack(to: commit.clock, into: &actions)
                return actions
            }
            knownRedisHead = max(knownRedisHead, commit.clock)
            deliver(delivery.receive(commit), now: now, into: &actions)
        }
        noteGap(now)
        finishBatchIfDone()
        pump(now, into: &actions)
        return actions
    }

    /// The log read from `from` (asked for by `readLog`) returned `entries`.
    /// - Parameter truncated: the read stopped at its byte budget before `logReadCount` commits (so fewer
    ///   commits do not mean the log ended there).
    @_specialize(exported: true, where Member == ObjectIdentifier)
    public mutating func logRead(from: UInt64, entries: [CommitNotice], truncated: Bool = false, now: UInt64)
        -> [PushAction<Member>]
    {
        var actions: [PushAction<Member>] = []
        let issuedAt = readIssuedAt ?? now
        readIssuedAt = nil
        // (A read issued before Redis's history went back: what it returns is read again after the reload.)
        guard delivery.isLoaded, !regressed else { return actions }
        if let first = entries.first, first.clock > delivery.head + 1 {
            // What we miss is gone from the log (trimmed while we were behind): read the whole doc again.
            requestReload(into: &actions)
            return actions
        }
        let before = delivery.head
        for entry in entries {
            knownRedisHead = max(knownRedisHead, entry.clock)
            deliver(delivery.receive(entry), now: now, into: &actions)
        }
        let complete = !truncated && entries.count < settings.logReadCount
        if complete { confirmedHead = (entries.last?.clock ?? (from > 0 ? from - 1 : 0), issuedAt) }
        noteGap(now)
        finishBatchIfDone()
        if !complete {
            requestRead(now, into: &actions)
        } else if delivery.gap != nil {
            // The log ends before commits pub/sub brought us: Redis lost them (restart without them)
            // or trimmed them. Start again from what Redis has.
            if delivery.head == before { requestReload(into: &actions) } else { requestRead(now, into: &actions) }
        }
        pump(now, into: &actions)
        return actions
    }

    /// The log read failed (Redis unreachable): a push waiting on it is refused, a gap is read again
    /// after the grace period.
    @_specialize(exported: true, where Member == ObjectIdentifier)
    public mutating func logReadFailed(now: UInt64) -> [PushAction<Member>] {
        var actions: [PushAction<Member>] = []
        readIssuedAt = nil
        if let headWait, let front = queue.first, front.seq == headWait.seq {
            self.headWait = nil
            _ = queue.popFirst()
            actions.append(.answer(refusal(front, .unavailable, "this node could not catch up with the doc; retry")))
        }
        if gapSeenAt != nil { gapSeenAt = now }
        pump(now, into: &actions)
        return actions
    }

    /// Redis's head as read directly (periodic check, after Redis reconnects, after a re-subscription):
    /// read what we miss.
    /// - Parameter knownAtIssue: `knownRedisHead` when the read was issued. Redis held at least that
    ///   much then, so a lower head means it lost commits since (a failover to a replica that had not
    ///   received them, a restore from an older snapshot): the doc is reloaded (`clockWentBack`). A
    ///   head lower than what was learnt only after the read was issued proves nothing (pub/sub may
    ///   deliver a commit before the read's reply arrives), hence the caller's value, not the current one.
    @_specialize(exported: true, where Member == ObjectIdentifier)
    public mutating func headObserved(_ clock: UInt64, knownAtIssue: UInt64? = nil, now: UInt64) -> [PushAction<Member>] {
        var actions: [PushAction<Member>] = []
        if regressed {
            // The reload after a regression failed (Redis unreachable): this check is when to try again.
            if !loadInFlight && redisUp { requestReload(into: &actions) }
            return actions
        }
        if let knownAtIssue, clock < knownAtIssue, delivery.isLoaded {
            clockWentBack(to: clock, into: &actions)
            return actions
        }
        knownRedisHead = max(knownRedisHead, clock)
        if delivery.isLoaded && clock > delivery.head { requestRead(now, into: &actions) }
        return actions
    }

    /// Whether Redis is reachable. Going down refuses the queued pushes (a batch in Redis gets its reply
    /// or failure); coming back resumes.
    @_specialize(exported: true, where Member == ObjectIdentifier)
    public mutating func setRedisAvailable(_ up: Bool, now: UInt64) -> [PushAction<Member>] {
        var actions: [PushAction<Member>] = []
        redisUp = up
        if up {
            if regressed && !loadInFlight { requestReload(into: &actions) }
            pump(now, into: &actions)
        } else {
            headWait = nil
            catchUp = nil
            refuseQueued("Redis is unreachable; retry the push", into: &actions)
        }
        return actions
    }

    // MARK: Redis lost commits

    /// Redis holds less of the doc than this node saw (its head is `head`): acknowledged commits were
    /// lost (asynchronous replication and a failover, a restore from an older snapshot). Nothing more is
    /// decided against the replica; the doc is read again and `replaceAfterRegression` restarts everyone
    /// from what Redis holds. Counted once per episode.
    mutating func clockWentBack(to head: UInt64, into actions: inout [PushAction<Member>]) {
        if !regressed { counters.clockRegressions += 1 }
        replacement = .regression
        knownRedisHead = head
        confirmedHead = nil
        headWait = nil
        catchUp = nil
        gapSeenAt = nil
        loadInFlight = false  // a load issued before may hold the old state: this one replaces it
        requestReload(into: &actions)
    }

    /// The reload after `clockWentBack`: the replica becomes what Redis holds, even behind what was
    /// delivered. Every member restarts from a snapshot of it; pushes not answered yet are refused
    /// `unavailable` after it (their clients push them again, under the same ids, on the new state —
    /// those Redis kept are recognised as duplicates).
    mutating func replaceAfterRegression(
        _ replica: DocReplica, retainedFrom: UInt64, now: UInt64, into actions: inout [PushAction<Member>]
    ) {
        knownRedisHead = replica.head
        readIssuedAt = nil
        delivery.replace(replica, retainedFrom: retainedFrom)
        for member in delivery.members {
            actions.append(.catchUp(member, delivery.attach(member, since: nil)))
        }
        let message = "the doc's history in Redis went back (commits lost by a failover or a restore); retry the push"
        if inFlight.contains(where: \.replied) {
            settleSkippedCommits(into: &actions)
            for batch in inFlight where batch.replied {
                for entry in batch.entries where !entry.delivered && !entry.abandoned {
                    actions.append(.answer(refusal(entry.push, .unavailable, message)))
                }
            }
            inFlight.removeAll { $0.replied }
        }
        refuseQueued(message, into: &actions)
        noteGap(now)
        pump(now, into: &actions)
    }

    /// Time passed: reads after a gap's grace period, deadlines of waits.
    @_specialize(exported: true, where Member == ObjectIdentifier)
    public mutating func tick(now: UInt64) -> [PushAction<Member>] {
        var actions: [PushAction<Member>] = []
        if readIssuedAt == nil, let seen = gapSeenAt, now >= seen + settings.gapGraceNanos {
            requestRead(now, into: &actions)
        }
        if readIssuedAt == nil, let catchUp, now >= catchUp.since + settings.gapGraceNanos {
            requestRead(now, into: &actions)
        }
        pump(now, into: &actions)
        return actions
    }
}
