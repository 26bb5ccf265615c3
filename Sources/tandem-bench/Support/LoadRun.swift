import NIOCore
import TandemClient
import TandemCore

/// A scenario's simulated client: made before it connects, attached to its `WebSocketClient` on its loop.
protocol LoadMember: AnyObject, Sendable {
    var loop: any EventLoop { get }
    /// What its client calls; read on `loop`.
    var callbacks: WebSocketClient.Callbacks { get }
    /// Its client once attached; read on `loop` only.
    var client: WebSocketClient? { get }
    /// Called on `loop` once connected.
    func attached(_ client: WebSocketClient)
}

/// The skeleton every load scenario shares (presence, sync, yjs; storm uses the ramp and the leave): the
/// ramp (paced connects that honour 503 `Retry-After`), the measured window after a warm-up with the ping
/// probe and resource sampling over it, the drain, and the clean leave. A scenario supplies its members,
/// what they do in the window, and its report.
struct LoadRun {
    let common: CommonOptions
    let connector: Connector
    let runID: String

    init(common: CommonOptions) {
        self.common = common
        self.connector = Connector(baseURL: common.url, connectRate: common.connectRate)
        self.runID = common.resolvedRunID
    }

    /// Connects every member to the node with its dev identity (paced, at most 1,000 handshakes in
    /// flight), logging progress every 2 s.
    /// - Parameters:
    ///   - identity: the `user` and `name` of member `i`.
    ///   - endpoint: another endpoint than `--url` for member `i` (a second node).
    func connect<Member: LoadMember>(
        _ members: [Member], identity: @escaping @Sendable (Int) -> (user: String, name: String),
        progress: @escaping @Sendable () -> String, endpoint: @escaping @Sendable (Int) -> String? = { _ in nil }
    ) async {
        let connector = self.connector
        await connect(members, progress: progress) { i in
            let (user, name) = identity(i)
            return connector.url([("user", user), ("name", name)], base: endpoint(i))
        }
    }

    /// Connects member `i` to `url(i)` (paced, at most `width` handshakes in flight), logging progress
    /// every 2 s.
    func connect<Member: LoadMember>(
        _ members: [Member], width: Int = 1000, progress: @escaping @Sendable () -> String,
        url: @escaping @Sendable (Int) -> String
    ) async {
        let connector = self.connector
        let count = members.count
        let logger = Task {
            while !Task.isCancelled {
                try await Task.sleep(nanoseconds: 2_000_000_000)
                log("  connected \(connector.snapshot.succeeded)/\(count), \(progress())")
            }
        }
        let refs = UnsafeTransfer(members)
        await forEachConcurrently(count, width: width) { i in
            let m = refs.value[i]
            guard let callbacks = try? await m.loop.submit({ m.callbacks }).get() else { return }
            if let client = await connector.connectPaced(url: url(i), on: m.loop, callbacks: callbacks) {
                m.loop.execute { m.attached(client) }
            }
        }
        logger.cancel()
    }

    /// What the measured window produced besides the scenario's own counters.
    struct Measured {
        var window: Window
        var resources: ResourceReport
        var probe: PingProbe
    }

    /// Starts the members' traffic 100 ms from now (`begin(sendStart, window)`), lets it warm up, samples
    /// resources over `[window.start, window.end)`, then waits `drain` seconds for what is in flight; a
    /// ping probe measures the node's round trip over the window.
    func measure(
        loops: [any EventLoop], warmup: Double, duration: Double, drain: Double,
        begin: (_ sendStart: UInt64, _ window: Window) -> Void
    ) async -> Measured {
        let probe = PingProbe(loop: loops[0])
        let (connector, runID) = (self.connector, self.runID)
        let (window, resources) = await measureWindow(warmup: warmup, duration: duration, drain: drain, begin: begin) { window in
            await probe.start(connector: connector, runID: runID, window: window)
        }
        return Measured(window: window, resources: resources, probe: probe)
    }

    /// `measure` without the ping probe (a y-websocket server has no ping message); `started(window)` runs
    /// once the traffic has begun, before the warm-up ends.
    func measureWindow(
        warmup: Double, duration: Double, drain: Double, begin: (_ sendStart: UInt64, _ window: Window) -> Void,
        started: (Window) async -> Void = { _ in }
    ) async -> (window: Window, resources: ResourceReport) {
        let sendStart = monotonicNanos() + 100_000_000
        let window = Window(start: sendStart + UInt64(warmup * 1e9), end: sendStart + UInt64((warmup + duration) * 1e9))
        begin(sendStart, window)
        await started(window)
        await sleep(untilNanos: window.start)
        let monitor = ResourceMonitor(options: common.monitorOptions)
        monitor.start()
        log("  measuring for \(duration) s")
        await sleep(untilNanos: window.end)
        let resources = monitor.stop()
        await sleep(seconds: drain)
        return (window, resources)
    }

    /// Closes every member's client (at most 250 at once).
    func closeAll<Member: LoadMember>(_ members: [Member]) async {
        let refs = UnsafeTransfer(members)
        await forEachConcurrently(members.count, width: 250) { i in
            let m = refs.value[i]
            if let c = try? await m.loop.submit({ m.client }).get() { await c.close() }
        }
    }
}

/// The send slots of one simulated client: one every `periodNs` from a random offset, each moved by up to
/// ± `spreadNs` of jitter, until the measured window ends.
struct SendSchedule {
    let periodNs: UInt64
    let spreadNs: Int64
    private var base: UInt64 = 0
    private var slot: UInt64 = 0
    /// When the current slot was due (send lag is measured from it).
    private(set) var scheduledAt: UInt64 = 0
    /// The jitter's draws: seeded once, not a `getrandom` system call per slot (see `SyncEditor.rng`).
    private var rng = SplitMix64(seed: UInt64.random(in: 0...UInt64.max))

    init(periodNs: UInt64, spreadNs: Int64) {
        self.periodNs = periodNs
        self.spreadNs = spreadNs
    }

    /// Starts the slots at a random point of the first period after `start`.
    mutating func begin(at start: UInt64) {
        base = start + UInt64.random(in: 0..<periodNs, using: &rng)
        slot = 0
    }

    /// The next slot if it was due by `now` (and is before the window's end), moving past it; nil
    /// otherwise. For slots that passed while nothing was sent (`SyncEditor` backing off): each is taken,
    /// none skipped, with the same jitter as a timer's slot.
    mutating func due(by now: UInt64, window: Window) -> UInt64? {
        var at = Int64(base + slot * periodNs)
        if spreadNs > 0 { at += Int64.random(in: -spreadNs...spreadNs, using: &rng) }
        let deadline = UInt64(max(at, 0))
        guard deadline <= now, deadline < window.end else { return nil }
        slot += 1
        return deadline
    }

    /// The next slot's deadline (nil once past the window's end), and the slots skipped because the bench
    /// fell more than a period behind (starved of CPU): a real client sends its latest state once, not a
    /// burst of stale ones. Skipped slots count only while `now` is in the window.
    mutating func next(window: Window) -> (deadline: UInt64, skipped: Int)? {
        let now = monotonicNanos()
        var skipped = 0
        if base + (slot + 1) * periodNs < now {
            let behind = (now - base) / periodNs
            if window.contains(now) { skipped = Int(behind - slot) }
            slot = behind
        }
        var at = Int64(base + slot * periodNs)
        if spreadNs > 0 { at += Int64.random(in: -spreadNs...spreadNs, using: &rng) }
        scheduledAt = UInt64(max(at, 0))
        guard scheduledAt < window.end else { return nil }
        slot += 1
        return (scheduledAt, skipped)
    }
}
