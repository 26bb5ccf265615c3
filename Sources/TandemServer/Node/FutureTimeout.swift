import NIOCore

extension EventLoopFuture where Value == Void {
    /// Waits for this future, but at most `timeout` (shutdown must finish even if Redis or a client
    /// does not answer).
    func wait(atMost timeout: TimeAmount) async {
        let promise = eventLoop.makePromise(of: Void.self)
        let timer = eventLoop.scheduleTask(in: timeout) { promise.succeed() }
        whenComplete { _ in
            timer.cancel()
            promise.succeed()
        }
        try? await promise.futureResult.get()
    }
}
