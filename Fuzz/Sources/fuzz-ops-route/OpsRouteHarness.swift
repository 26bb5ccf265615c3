import FuzzSupport
import TandemCore

// The ops plane's router front half, `OpsRoute.parse(path:query:)`, on any request target an
// unauthenticated client (or any web page, through a browser) can send to the ops port: the target is
// split by `QueryString.parse`, as a percent-decoding HTTP server would hand it over.
//
// Invariants:
// - nothing traps;
// - every number a route carries is in range: `from` ≤ 2^53−1, 1 ≤ `limit` ≤ the configured maximum,
//   0 ≤ `history` ≤ the configured maximum; doc ids are valid;
// - refusals are 400 or 404 with a bounded message;
// - a route is a pure function of its input (parsing twice gives the same result).

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOpsRoute(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let target = String(decoding: UnsafeBufferPointer(start: data, count: data == nil ? 0 : size), as: UTF8.self)
    let (path, query) = QueryString.parse(uri: target)
    let limits = OpsRoute.Limits(maxHistory: 300, maxLogLimit: 5_000)
    let result = OpsRoute.parse(path: path, query: query, limits: limits)
    require(result == OpsRoute.parse(path: path, query: query, limits: limits), "parsing \(target) twice differs")
    switch result {
    case .success(.status(let history)):
        if let history { require((0...limits.maxHistory).contains(history), "history \(history) out of range") }
    case .success(.doc(let doc)):
        require(DocID.isValid(doc), "doc id \(doc) accepted")
    case .success(.docLog(let doc, let from, let limit)):
        require(DocID.isValid(doc), "doc id \(doc) accepted")
        require(from <= OpsRoute.maxClock, "from \(from) above the largest clock")
        require((1...limits.maxLogLimit).contains(limit), "limit \(limit) out of range")
    case .success:
        break
    case .failure(let error):
        require(error.status == 400 || error.status == 404, "status \(error.status)")
        require(error.message.utf8.count <= 256, "message of \(error.message.utf8.count) bytes")
    }
    return 0
}
