import Foundation
import Logging
import NIOConcurrencyHelpers
import TandemCore

/// The node's reconnect-storm state: fed by every counted reconnect, evaluated once a second, exported
/// as tandem_reconnect_storm and logged once when a storm starts and once when it ends.
final class ReconnectStormMonitor: Sendable {
    /// The last storm that ended: when, how long, how bad.
    struct PastStorm: Codable, Sendable {
        var endedAt: Date
        var durationSeconds: Double
        var peakRate: Double
    }

    private let detector: NIOLockedValueBox<ReconnectStormDetector>
    private let times = NIOLockedValueBox<(startedAt: Date?, last: PastStorm?)>((nil, nil))
    private let metrics: TandemMetrics
    private let logger: Logger
    private let clock = NodeClock()

    init(threshold: Double, metrics: TandemMetrics, logger: Logger) {
        detector = NIOLockedValueBox(ReconnectStormDetector(threshold: threshold))
        self.metrics = metrics
        self.logger = logger
    }

    func record() {
        let now = clock.nowMs()
        detector.withLockedValue { $0.record(nowMs: now) }
    }

    func evaluate() {
        let now = clock.nowMs()
        let transition = detector.withLockedValue { $0.evaluate(nowMs: now) }
        switch transition {
        case .started(let rate)?:
            times.withLockedValue { $0.startedAt = Date() }
            metrics.reconnectStorm.set(to: 1)
            logger.warning("reconnect storm started", metadata: ["rate": "\(Int(rate))/s"])
        case .ended(let peak, let duration)?:
            times.withLockedValue {
                $0.startedAt = nil
                $0.last = PastStorm(endedAt: Date(), durationSeconds: Double(duration) / 1000, peakRate: peak)
            }
            metrics.reconnectStorm.set(to: 0)
            logger.warning(
                "reconnect storm ended",
                metadata: ["peak.rate": "\(Int(peak))/s", "duration.seconds": "\(Double(duration) / 1000)"])
        case nil:
            break
        }
    }

    /// Current rate and state, for /api/status.
    func snapshot() -> (rate: Double, inStorm: Bool, peak: Double, startedAt: Date?, last: PastStorm?) {
        let now = clock.nowMs()
        let (rate, inStorm, peak) = detector.withLockedValue { ($0.rate(nowMs: now), $0.inStorm, $0.peakRate) }
        let (startedAt, last) = times.withLockedValue { ($0.startedAt, $0.last) }
        return (rate, inStorm, peak, inStorm ? startedAt : nil, last)
    }
}
