import NIOConcurrencyHelpers

/// One command on its way through the cluster: what to send, where, and how far its retries got.
/// Attempts of one command never overlap, so each attempt hands the updated value to the next.
struct ClusterCommandRun: Sendable {
    var command: RedisCommand
    var route: ClusterRoute
    var retry: ClusterRetryState
    /// The shard the current attempt went to (per-shard figures; see `shardObserver`).
    var shard: Int?
    let completion: @Sendable (Result<RedisValue, RedisError>) -> Void
}

extension ClusterClientCore {
    /// What a caller's request meets at the door.
    private enum Admission {
        case single(RedisClient)
        case refused(RedisError)
        case accepted
    }

    /// Where an attempt goes.
    private enum Target {
        /// The primary of the run's slot in the current map (any primary for keyless commands).
        case route
        /// This node (a redirect), with `ASKING` first for an `ASK`.
        case node(ClusterNodeAddress, asking: Bool)
    }

    // MARK: - Entry points

    func send(_ command: RedisCommand, completion: @escaping @Sendable (Result<RedisValue, RedisError>) -> Void) {
        if let single = singleClient() {
            single.send(command, completion: completion)
            return
        }
        let route = ClusterCommandKeys.route(of: command)
        switch admit(count: 1, route: route) {
        case .single(let client):
            client.send(command, completion: completion)
        case .refused(let error):
            completion(.failure(error))
        case .accepted:
            attempt(makeRun(command, route: route, completion: completion), .route)
        }
    }

    func send(_ commands: [RedisCommand], completion: @escaping @Sendable ([Result<RedisValue, RedisError>]) -> Void) {
        guard !commands.isEmpty else {
            completion([])
            return
        }
        let route = ClusterCommandKeys.route(of: commands)
        switch admit(count: commands.count, route: route) {
        case .single(let client):
            client.send(commands, completion: completion)
        case .refused(let error):
            completion(Array(repeating: .failure(error), count: commands.count))
        case .accepted:
            let collector = BatchCollector(count: commands.count, completion: completion)
            let runs = commands.enumerated().map { index, command in
                makeRun(command, route: route) { collector.set(index, $0) }
            }
            // The first attempt is one pipeline on one connection; commands that need another attempt
            // continue one by one.
            var created: [RedisClient] = []
            let resolved = state.withLockedValue { state in
                resolve(route, in: &state, created: &created).map { ($0, $1, shardIndex(route: route, address: $0, in: state)) }
            }
            for client in created { client.start() }
            guard let (address, client, shard) = resolved else {
                for run in runs { handle(run, .failure(.notConnected), from: nil) }
                return
            }
            client.send(commands) { [self] results in
                for (run, result) in zip(runs, results) {
                    var run = run
                    run.shard = shard
                    handle(run, result, from: address)
                }
            }
        }
    }

    func evalScript(
        _ script: RedisScript,
        keys: [any RedisArgument],
        args: [any RedisArgument],
        completion: @escaping @Sendable (Result<RedisValue, RedisError>) -> Void
    ) {
        // A single Redis needs no route: hashing every key to its slot was about 5,000 instructions per
        // script call (a group commit has nine keys) in the callgrind profile of the commit path.
        if let single = singleClient() {
            single.evalScript(script, keys: keys, args: args, completion: completion)
            return
        }
        let route = ClusterCommandKeys.route(ofKeys: keys)
        switch admit(count: 1, route: route) {
        case .single(let client):
            client.evalScript(script, keys: keys, args: args, completion: completion)
        case .refused(let error):
            completion(.failure(error))
        case .accepted:
            // The node's connection loads the script before its first call and falls back to `EVAL` on
            // `NOSCRIPT`, keeping that node's script calls in order (ClientConnectionHandler); a `MOVED`
            // or `ASK` answer to either is followed here like any other command's.
            attempt(makeRun(RedisCommand(evalSHA: script, keys: keys, args: args), route: route, completion: completion), .route)
        }
    }

    // MARK: - Admission

    /// The single server's client in single mode (and not shut down), in one lock: what nearly every
    /// command of a node on one Redis meets, before any routing work. (The mode is settled once, at
    /// start: only `detecting` becomes something else, and it refuses.)
    private func singleClient() -> RedisClient? {
        state.withLockedValue { state in
            guard !state.shutdownRequested, state.mode == .single else { return nil }
            return state.single
        }
    }

    private func admit(count: Int, route: ClusterRoute) -> Admission {
        state.withLockedValue { state in
            if state.shutdownRequested { return .refused(.shutdown) }
            switch state.mode {
            case .detecting:
                return .refused(.notConnected)
            case .single:
                guard let single = state.single else { return .refused(.notConnected) }
                return .single(single)
            case .cluster:
                if route == .crossSlot { return .refused(.crossSlot) }
                if state.pending + count > configuration.maxPendingCommands { return .refused(.overloaded) }
                state.pending += count
                return .accepted
            }
        }
    }

    private func makeRun(
        _ command: RedisCommand, route: ClusterRoute, completion: @escaping @Sendable (Result<RedisValue, RedisError>) -> Void
    ) -> ClusterCommandRun {
        ClusterCommandRun(
            command: command, route: route, retry: ClusterRetryState(policy: policy, now: monotonicNanoseconds()),
            completion: completion)
    }

    // MARK: - Attempts

    /// The node to send to, under the state lock. `nil` when the slot has no primary yet.
    private func resolve(
        _ route: ClusterRoute, in state: inout State, created: inout [RedisClient]
    ) -> (ClusterNodeAddress, RedisClient)? {
        let address: ClusterNodeAddress?
        switch route {
        case .slot(let slot):
            address = state.routes.address(forSlot: slot)
        case .anyNode, .crossSlot:
            // Round robin over the primaries, preferring one whose connection is up.
            let primaries = state.primaries
            guard !primaries.isEmpty else { return nil }
            let start = state.rotation
            state.rotation &+= 1
            let offsets = 0..<primaries.count
            let connected = offsets.lazy.map { primaries[(start &+ $0) % primaries.count] }
                .first { state.nodes[Self.key($0)]?.client.isConnected ?? false }
            address = connected ?? primaries[start % primaries.count]
        }
        guard let address, let client = client(for: address, in: &state, created: &created) else { return nil }
        return (address, client)
    }

    /// Sends one attempt of `run`.
    private func attempt(_ run: ClusterCommandRun, _ target: Target) {
        var run = run
        var created: [RedisClient] = []
        let resolved = state.withLockedValue { state -> (ClusterNodeAddress, RedisClient)?? in
            guard !state.shutdownRequested else { return .none }
            let resolved: (ClusterNodeAddress, RedisClient)?
            switch target {
            case .route:
                resolved = resolve(run.route, in: &state, created: &created)
            case .node(let address, _):
                resolved = client(for: address, in: &state, created: &created).map { (address, $0) }
            }
            if let (address, _) = resolved { run.shard = shardIndex(route: run.route, address: address, in: state) }
            return .some(resolved)
        }
        for client in created { client.start() }
        guard let resolved else {
            finish(run, .failure(.shutdown))
            return
        }
        guard let (address, client) = resolved else {
            handle(run, .failure(.notConnected), from: nil)
            return
        }
        if case .node(_, asking: true) = target {
            // One batch, so nothing can come between ASKING and the command on the connection.
            // A script call goes as `EVAL`: a `SCRIPT LOAD` the connection put first would come between the
            // two and use up the `ASKING` (migrations are rare; the source costs little then).
            client.send([RedisCommand("ASKING"), run.command.evalForm]) { [self, run] results in
                handle(run, results.count == 2 ? results[1] : .failure(.connectionLost), from: address)
            }
        } else {
            client.send(run.command) { [self, run] result in
                handle(run, result, from: address)
            }
        }
    }

    /// Acts on the outcome of one attempt: complete, redirect, or retry later.
    private func handle(_ run: ClusterCommandRun, _ result: Result<RedisValue, RedisError>, from address: ClusterNodeAddress?) {
        var run = run
        var result = result
        if case .failure(.shutdown) = result, !state.withLockedValue({ $0.shutdownRequested }) {
            // A retired node connection stopped under a command that may have run.
            result = .failure(.connectionLost)
        }
        let now = monotonicNanoseconds()
        let decision = run.retry.decide(result, now: now, replyingHost: address?.host ?? "")
        if decision.refreshTopology { requestRefresh() }
        if address != nil, let observer = configuration.shardObserver {
            switch decision.action {
            case .redirect, .ask: observer(run.shard, .redirect)
            case .retry: observer(run.shard, .error)
            case .complete(.failure): observer(run.shard, .error)
            case .complete(.success): observer(run.shard, .reply)
            }
        }
        // The common case (a reply) takes one lock, in `finish`.
        if case .complete(let final) = decision.action {
            finish(run, final)
            return
        }
        if state.withLockedValue({ $0.shutdownRequested }) {
            finish(run, .failure(.shutdown))
            return
        }
        switch decision.action {
        case .complete(let final):
            finish(run, final)
        case .redirect(let slot, let target):
            learnMoved(slot: slot, to: target)
            attempt(run, .node(target, asking: false))
        case .ask(let target):
            attempt(run, .node(target, asking: true))
        case .retry(let delay):
            timer.schedule(at: now &+ UInt64(delay)) { [self, run] in attempt(run, .route) }
        }
    }

    private func finish(_ run: ClusterCommandRun, _ result: Result<RedisValue, RedisError>) {
        state.withLockedValue { $0.pending -= 1 }
        run.completion(result)
    }
}

extension ClusterClientCore {
    /// Sends `commands` (keyless) as one batch to each primary, or to the one server in single mode,
    /// and completes once with every node's results (nodes whose connection is missing are left out).
    /// Not retried or redirected: this is for per-node figures (`INFO`), which a later call repeats.
    func sendToEachPrimary(
        _ commands: [RedisCommand],
        completion: @escaping @Sendable ([(node: String, results: [Result<RedisValue, RedisError>])]) -> Void
    ) {
        var created: [RedisClient] = []
        let targets = state.withLockedValue { state -> [(String, RedisClient)] in
            guard !state.shutdownRequested else { return [] }
            switch state.mode {
            case .detecting:
                return []
            case .single:
                return state.single.map { [("\($0.configuration.endpoint.address)", $0)] } ?? []
            case .cluster:
                return state.primaries.compactMap { address in
                    client(for: address, in: &state, created: &created).map { ("\(address.host):\(address.port)", $0) }
                }
            }
        }
        for client in created { client.start() }
        guard !targets.isEmpty else {
            completion([])
            return
        }
        let gathered = NIOLockedValueBox<(left: Int, replies: [(node: String, results: [Result<RedisValue, RedisError>])])>(
            (targets.count, []))
        for (node, client) in targets {
            client.send(commands) { results in
                let done = gathered.withLockedValue { gathered -> [(node: String, results: [Result<RedisValue, RedisError>])]? in
                    gathered.replies.append((node, results))
                    gathered.left -= 1
                    return gathered.left == 0 ? gathered.replies : nil
                }
                if let done { completion(done.sorted { $0.node < $1.node }) }
            }
        }
    }
}
