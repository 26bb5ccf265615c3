import CMicroHTTPD
import Logging

/// Turns an `OpsResponse` into a libmicrohttpd response and queues it.
///
/// Never traps: an unusable response (bad status, header libmicrohttpd
/// refuses such as one containing CR/LF) is logged and replaced by a 500; if
/// even that cannot be queued, returns `.NO`, which makes libmicrohttpd close
/// the connection without an answer. Runs on the connection's thread.
func queueResponse(
    _ response: OpsResponse,
    on connection: OpaquePointer,
    logger: Logger,
    requestDescription: @autoclosure () -> String
) -> MHD_Result {
    var candidate = response
    if !(100...599).contains(candidate.status) {
        logger.error(
            "ops HTTP: handler returned invalid status, answering 500",
            metadata: ["request": "\(requestDescription())", "status": "\(candidate.status)"])
        candidate = .internalError("invalid response status")
    }

    let built: OpaquePointer
    switch makeLibraryResponse(candidate) {
    case .success(let pointer):
        built = pointer
    case .failure(let problem):
        logger.error(
            "ops HTTP: handler response unusable, answering 500",
            metadata: ["request": "\(requestDescription())", "problem": "\(problem.message)"])
        candidate = .internalError("invalid response")
        guard case .success(let fallback) = makeLibraryResponse(candidate) else {
            logger.error("ops HTTP: cannot build fallback response, closing connection")
            return .NO
        }
        built = fallback
    }
    // MHD_queue_response takes its own reference; ours is dropped either way.
    defer { MHD_destroy_response(built) }

    let queued = MHD_queue_response(connection, UInt32(candidate.status), built)
    if queued == .NO {
        logger.error(
            "ops HTTP: libmicrohttpd refused to queue response, closing connection",
            metadata: ["request": "\(requestDescription())", "status": "\(candidate.status)"])
    }
    return queued
}

private struct ResponseProblem: Error {
    let message: String
}

/// Headers libmicrohttpd computes itself; passing them would duplicate or
/// contradict its own (`Content-Length` must match what it sends, also for HEAD).
private let libraryManagedHeaders: Set<String> = ["content-length", "transfer-encoding"]

private func makeLibraryResponse(_ response: OpsResponse) -> Result<OpaquePointer, ResponseProblem> {
    // MUST_COPY: libmicrohttpd owns a copy, so the Swift array can go away
    // as soon as this returns, whatever the connection does later.
    let created = response.body.withUnsafeBytes { bytes in
        MHD_create_response_from_buffer(
            bytes.count, UnsafeMutableRawPointer(mutating: bytes.baseAddress), .RESPMEM_MUST_COPY)
    }
    guard let created else {
        return .failure(ResponseProblem(message: "MHD_create_response_from_buffer failed"))
    }

    var hasCacheControl = false
    var hasContentType = false
    for (name, value) in response.headers {
        let lowered = name.lowercased()
        if libraryManagedHeaders.contains(lowered) { continue }
        if lowered == "cache-control" { hasCacheControl = true }
        if lowered == "content-type" { hasContentType = true }
        guard isValidHeader(name: name, value: value),
              MHD_add_response_header(created, name, value) == .YES
        else {
            MHD_destroy_response(created)
            return .failure(ResponseProblem(message: "header '\(name)' rejected"))
        }
    }
    var defaults: [(String, String)] = []
    if !hasCacheControl { defaults.append(("Cache-Control", "no-store")) }
    if !hasContentType && !response.body.isEmpty { defaults.append(("Content-Type", "application/octet-stream")) }
    for (name, value) in defaults where MHD_add_response_header(created, name, value) != .YES {
        MHD_destroy_response(created)
        return .failure(ResponseProblem(message: "default header '\(name)' rejected"))
    }
    return .success(created)
}

/// RFC 9110 token for the name; no control characters (CR/LF/NUL would split
/// or truncate the header) in the value. Checked here rather than trusting
/// libmicrohttpd, whose checks differ between versions.
private func isValidHeader(name: String, value: String) -> Bool {
    guard !name.isEmpty else { return false }
    let tokenSymbols = Set("!#$%&'*+-.^_`|~".utf8)
    for byte in name.utf8 {
        let isAlnum = (byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x5A) || (byte >= 0x61 && byte <= 0x7A)
        if !isAlnum && !tokenSymbols.contains(byte) { return false }
    }
    for byte in value.utf8 where (byte < 0x20 && byte != 0x09) || byte == 0x7F {
        return false
    }
    return true
}
