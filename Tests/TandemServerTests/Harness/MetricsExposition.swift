@testable import TandemServer

extension TandemMetrics {
    /// The value of one line of the text exposition (`name` or `name{labels}`, exactly), 0 if absent.
    func value(of series: String) -> Double {
        let text = String(decoding: exposition(), as: UTF8.self)
        for line in text.split(separator: "\n") where line.hasPrefix(series + " ") {
            return Double(line.dropFirst(series.count + 1)) ?? 0
        }
        return 0
    }
}
