import CMicroHTTPD
import Logging

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// The C callbacks handed to libmicrohttpd. They are plain global functions so
// that they convert to `@convention(c)` pointers and capture nothing; all
// state arrives through the `void *` arguments:
//   cls     → the `ServerContext` of the running daemon (see its docs for
//             the passRetained/release pairing),
//   con_cls → the `RequestState` of the request (see its docs).
// None of them may trap on client input: a malformed request must only ever
// cost that request, never the process.

/// `MHD_AccessHandlerCallback`, called for every request in three phases:
/// once when the headers are in (`*con_cls == NULL`: set up `RequestState`,
/// check the Host, refuse a declared over-limit body early), once per chunk
/// of upload data (accumulate it), and once with `*upload_data_size == 0`
/// when the request is complete (run the handler, queue its response or
/// suspend the connection for a deferred one). A deferred request gets one
/// more call after `MHD_resume_connection`, which queues the answer.
///
/// Thread: the polling thread that owns the connection, never concurrently
/// for the same connection. Touches `RequestState` (no lock needed: confined
/// to that thread) and `ServerContext` (immutable apart from its own locked
/// boxes). The handler runs here and shares the thread with every other
/// connection of that thread, so it must not block (see `OpsReply`).
func mhdAccessHandler(
    cls: UnsafeMutableRawPointer?,
    connection: OpaquePointer?,
    url: UnsafePointer<CChar>?,
    method: UnsafePointer<CChar>?,
    version: UnsafePointer<CChar>?,
    uploadData: UnsafePointer<CChar>?,
    uploadDataSize: UnsafeMutablePointer<Int>?,
    conCls: UnsafeMutablePointer<UnsafeMutableRawPointer?>?
) -> MHD_Result {
    guard let cls, let connection, let url, let method, let uploadDataSize, let conCls else {
        return .NO
    }
    let context = Unmanaged<ServerContext>.fromOpaque(cls).takeUnretainedValue()

    // Phase 1: headers received, body (if any) not read yet.
    guard let statePointer = conCls.pointee else {
        let state = RequestState(liveCounter: context.liveRequests)
        conCls.pointee = Unmanaged.passRetained(state).toOpaque()
        state.completedAtMs = monotonicMilliseconds()
        context.connections.requestStarted(connection)
        // The Host check comes first: a DNS-rebinding page gets a 421 and nothing else.
        let hosts = collectValues(connection, kind: .HEADER_KIND).filter { $0.0.lowercased() == "host" }.map(\.1)
        if hosts.count > 1 || !context.hostPolicy.allows(hostHeader: hosts.first) {
            state.responded = true
            context.observe(.hostRejected)
            return finish(state, .hostNotAllowed(hosts.joined(separator: ", ")), on: connection, context: context,
                          method: method, url: url)
        }
        let declared = declaredContentLength(connection)
        let tooLarge = declared.map { $0 > UInt64(context.maxRequestBodyBytes) }
            ?? (context.maxRequestBodyBytes == 0 && hasTransferEncoding(connection))
        if tooLarge {
            // Answering before the body is read makes libmicrohttpd skip the
            // upload (no `100 Continue`) and close the connection afterwards.
            state.responded = true
            return finish(state, .contentTooLarge(limit: context.maxRequestBodyBytes), on: connection, context: context,
                          method: method, url: url)
        }
        return .YES
    }
    let state = Unmanaged<RequestState>.fromOpaque(statePointer).takeUnretainedValue()

    // Resumed after a deferred answer came in (or the timeout or stop() answered for it).
    if let id = state.deferredID {
        state.deferredID = nil
        guard let build = context.pending.takeAnswer(id) else { return .NO }
        return finish(state, build(), on: connection, context: context, method: method, url: url)
    }
    if state.responded { return .YES }

    // Phase 2: a chunk of the body. A response cannot be queued from here,
    // so an over-limit (chunked) body is read and dropped, and answered at
    // the end; past `maxDiscardedBodyBytes` we stop being polite and close.
    let chunkSize = uploadDataSize.pointee
    if chunkSize > 0 {
        uploadDataSize.pointee = 0
        if state.bodyTooLarge {
            state.discardedBytes += chunkSize
            if state.discardedBytes > context.maxDiscardedBodyBytes {
                context.logger.debug(
                    "ops HTTP: closing connection after discarding oversized body",
                    metadata: ["request": "\(describe(method, url))", "discarded": "\(state.discardedBytes)"])
                return .NO
            }
        } else if state.body.count + chunkSize > context.maxRequestBodyBytes {
            state.bodyTooLarge = true
            state.discardedBytes = state.body.count + chunkSize
            state.body = []
        } else if let uploadData {
            state.body.append(contentsOf: UnsafeRawBufferPointer(start: uploadData, count: chunkSize))
        }
        return .YES
    }

    // Phase 3: the request is complete.
    state.responded = true
    state.completedAtMs = monotonicMilliseconds()
    if state.bodyTooLarge {
        return finish(state, .contentTooLarge(limit: context.maxRequestBodyBytes), on: connection, context: context,
                      method: method, url: url)
    }
    let request = OpsRequest(
        method: String(cString: method),
        path: String(cString: url),
        query: collectQuery(connection),
        headers: collectHeaders(connection),
        body: state.body
    )
    state.body = []
    let reply = context.handler(request)
    state.label = reply.label
    switch reply.kind {
    case .now(let response):
        return finish(state, response, on: connection, context: context, method: method, url: url)
    case .deferred(let start):
        switch context.pending.suspend(connection) {
        case .full:
            context.observe(.pendingLimitReached)
            return finish(state, .busy(pending: context.pending.maxPending), on: connection, context: context,
                          method: method, url: url)
        case .stopping:
            return finish(state, .shuttingDown(), on: connection, context: context, method: method, url: url)
        case .suspended(let responder):
            state.deferredID = responder.id
            start(responder)
            return .YES
        }
    }
}

/// Queues `response` and reports the request as finished.
private func finish(
    _ state: RequestState,
    _ response: OpsResponse,
    on connection: OpaquePointer,
    context: ServerContext,
    method: UnsafePointer<CChar>,
    url: UnsafePointer<CChar>
) -> MHD_Result {
    let result = queueResponse(response, on: connection, logger: context.logger, requestDescription: describe(method, url))
    let elapsedMs = monotonicMilliseconds() &- state.completedAtMs  // monotonic: never wraps in practice
    context.observe(.requestFinished(label: state.label, status: response.status, seconds: Double(elapsedMs) / 1000))
    return result
}

/// `MHD_RequestCompletedCallback` (`MHD_OPTION_NOTIFY_COMPLETED`): releases
/// the `RequestState` retained in phase 1 of `mhdAccessHandler`, however the
/// request ended (completed, client abort, timeout, daemon shutdown), and
/// marks the connection idle for `ConnectionGuard`.
///
/// Thread: the connection's polling thread, or the thread running
/// `MHD_stop_daemon` during shutdown; never concurrently with the access
/// handler for the same request.
func mhdRequestCompleted(
    cls: UnsafeMutableRawPointer?,
    connection: OpaquePointer?,
    conCls: UnsafeMutablePointer<UnsafeMutableRawPointer?>?,
    reason: MHD_RequestTerminationCode
) {
    guard let cls else { return }
    let context = Unmanaged<ServerContext>.fromOpaque(cls).takeUnretainedValue()
    if let connection { context.connections.requestFinished(connection) }
    guard let conCls, let statePointer = conCls.pointee else { return }
    conCls.pointee = nil
    let state = Unmanaged<RequestState>.fromOpaque(statePointer).takeRetainedValue()
    // Resumed but closed before the answer was picked up (client gone, or daemon shutdown).
    if let id = state.deferredID { context.pending.forget(id) }
}

/// `MHD_NotifyConnectionCallback` (`MHD_OPTION_NOTIFY_CONNECTION`): every
/// connection's start and close go to `ConnectionGuard`, which may refuse
/// the new connection or evict an idle one.
///
/// Thread: the polling thread that owns the connection (or the thread
/// running `MHD_stop_daemon`). CLOSED comes before libmicrohttpd closes the
/// socket, which `ConnectionGuard` relies on.
func mhdNotifyConnection(
    cls: UnsafeMutableRawPointer?,
    connection: OpaquePointer?,
    socketContext: UnsafeMutablePointer<UnsafeMutableRawPointer?>?,
    code: MHD_ConnectionNotificationCode
) {
    guard let cls, let connection else { return }
    let context = Unmanaged<ServerContext>.fromOpaque(cls).takeUnretainedValue()
    switch code {
    case .CONNECTION_NOTIFY_STARTED: context.connections.started(connection)
    case .CONNECTION_NOTIFY_CLOSED: context.connections.closed(connection)
    default: break
    }
}

/// `MHD_LogCallback` (`MHD_OPTION_EXTERNAL_LOGGER`): formats libmicrohttpd's
/// printf-style message and forwards it to the server's `Logger` — at most
/// `ServerContext.libraryLogLinesPerSecond` a second, since clients can make
/// libmicrohttpd log (every refused connection does); also keeps the last
/// few so a failing `MHD_start_daemon` can report why.
///
/// Thread: any libmicrohttpd thread, or the thread inside `MHD_start_daemon`
/// / `MHD_stop_daemon`; possibly concurrently. Touches `ServerContext`, whose
/// message list is behind its own lock and whose `Logger` is thread-safe.
func mhdLog(cls: UnsafeMutableRawPointer?, format: UnsafePointer<CChar>?, arguments: CVaListPointer?) {
    guard let cls, let format, let arguments else { return }
    let context = Unmanaged<ServerContext>.fromOpaque(cls).takeUnretainedValue()
    var buffer = [CChar](repeating: 0, count: 512)
    let message = buffer.withUnsafeMutableBufferPointer { buffer -> String in
        _ = vsnprintf(buffer.baseAddress, buffer.count, format, arguments)
        return String(cString: buffer.baseAddress!)
    }
    var trimmed = Substring(message)
    while let last = trimmed.last, last.isWhitespace { trimmed.removeLast() }
    let (log, suppressed) = context.recordLibraryMessage(String(trimmed))
    guard log else { return }
    if suppressed > 0 {
        context.logger.warning("libmicrohttpd: \(trimmed)", metadata: ["suppressed.before": "\(suppressed)"])
    } else {
        context.logger.warning("libmicrohttpd: \(trimmed)")
    }
}

/// `MHD_KeyValueIterator` for `MHD_get_connection_values`: appends each pair
/// to the `ValueCollector` passed as `cls`.
///
/// Thread: synchronously inside `MHD_get_connection_values`, i.e. on the
/// connection thread running `mhdAccessHandler`; the collector lives on that
/// thread's stack frame, so no lock is involved.
func mhdCollectValue(
    cls: UnsafeMutableRawPointer?,
    kind: MHD_ValueKind,
    key: UnsafePointer<CChar>?,
    value: UnsafePointer<CChar>?
) -> MHD_Result {
    guard let cls, let key else { return .YES }
    let collector = Unmanaged<ValueCollector>.fromOpaque(cls).takeUnretainedValue()
    collector.pairs.append((String(cString: key), value.map { String(cString: $0) } ?? ""))
    return .YES
}

/// Accumulates key/value pairs for `mhdCollectValue`; used on one thread only.
final class ValueCollector {
    var pairs: [(String, String)] = []
}

private func collectValues(_ connection: OpaquePointer, kind: MHD_ValueKind) -> [(String, String)] {
    let collector = ValueCollector()
    withExtendedLifetime(collector) {
        _ = MHD_get_connection_values(
            connection, kind, mhdCollectValue, Unmanaged.passUnretained(collector).toOpaque())
    }
    return collector.pairs
}

/// Query arguments, already percent-decoded (and `+` → space) by libmicrohttpd.
private func collectQuery(_ connection: OpaquePointer) -> [String: String] {
    var query: [String: String] = [:]
    for (key, value) in collectValues(connection, kind: .GET_ARGUMENT_KIND) {
        query[key] = value
    }
    return query
}

/// Headers keyed by lowercased name; repeats are joined with ", ".
private func collectHeaders(_ connection: OpaquePointer) -> [String: String] {
    var headers: [String: String] = [:]
    for (name, value) in collectValues(connection, kind: .HEADER_KIND) {
        let key = name.lowercased()
        if let existing = headers[key] {
            headers[key] = existing + ", " + value
        } else {
            headers[key] = value
        }
    }
    return headers
}

/// The request's `Content-Length`, if it sent one that parses. (libmicrohttpd
/// answers a malformed one with 400 itself; an unparsable value here only
/// skips the early 413, the body limit is still enforced chunk by chunk.)
private func declaredContentLength(_ connection: OpaquePointer) -> UInt64? {
    guard let raw = MHD_lookup_connection_value(connection, .HEADER_KIND, "Content-Length") else {
        return nil
    }
    return UInt64(String(cString: raw))
}

/// Whether the request announced a body of unknown length (chunked).
private func hasTransferEncoding(_ connection: OpaquePointer) -> Bool {
    MHD_lookup_connection_value(connection, .HEADER_KIND, "Transfer-Encoding") != nil
}

private func describe(_ method: UnsafePointer<CChar>, _ url: UnsafePointer<CChar>) -> String {
    String(cString: method) + " " + String(cString: url)
}
