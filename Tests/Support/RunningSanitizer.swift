import Foundation

/// The sanitizer the tests run under, from `TANDEM_SANITIZER` (set by scripts/test-sanitizers.sh), or nil.
///
/// For the rare test that cannot finish under a sanitizer on a small machine: it says so with
/// `.disabled(if: RunningSanitizer.current == .thread, "why")`, and the skip shows in the run's output.
public enum RunningSanitizer: String, Sendable {
    case thread
    case address

    public static let current: RunningSanitizer? = ProcessInfo.processInfo.environment["TANDEM_SANITIZER"].flatMap {
        RunningSanitizer(rawValue: $0)
    }
}
