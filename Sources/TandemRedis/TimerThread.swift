import NIOConcurrencyHelpers

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A dedicated thread that runs closures at monotonic deadlines, earliest first (first come, first
/// served for equal deadlines): the cluster client's retries, slot-map refreshes and hook calls.
///
/// A thread of its own rather than an event loop's timers, so TandemRedis needs no event loop and
/// never runs on one. Work must be short and must not block: it only queues commands and updates
/// state. Never schedule while holding a lock that scheduled work also takes (after ``stop()``,
/// ``schedule(at:_:)`` runs the work on the calling thread).
final class TimerThread: Sendable {
    private struct Entry {
        var deadline: UInt64
        var sequence: UInt64
        var work: @Sendable () -> Void

        func precedes(_ other: Entry) -> Bool {
            (deadline, sequence) < (other.deadline, other.sequence)
        }
    }

    private struct State {
        /// A binary min-heap on (deadline, sequence).
        var heap: [Entry] = []
        var nextSequence: UInt64 = 0
        var stopping = false
        var finished = false
    }

    /// Protected by the box's lock.
    private let state = NIOLockedValueBox(State())
    private let wake = WakePipe()
    private let lifecycle = OwnerThreadLifecycle()

    /// Starts the thread; calling it again does nothing.
    func start(name: String) {
        let (state, wake) = (self.state, self.wake)
        lifecycle.start(name: name) { Self.run(state: state, wake: wake) }
    }

    /// Runs `work` on the timer thread at `deadline` (monotonic nanoseconds; 0 or the past: as soon as
    /// possible). Once the thread has stopped, runs it right away on the calling thread.
    func schedule(at deadline: UInt64, _ work: @escaping @Sendable () -> Void) {
        let (accepted, wasEarliest) = state.withLockedValue { state -> (Bool, Bool) in
            guard !state.finished else { return (false, false) }
            let entry = Entry(deadline: deadline, sequence: state.nextSequence, work: work)
            state.nextSequence += 1
            Self.push(entry, into: &state.heap)
            return (true, state.heap[0].sequence == entry.sequence)
        }
        if !accepted {
            work()
        } else if wasEarliest {
            wake.wake()
        }
    }

    /// Runs `work` on the timer thread as soon as possible.
    func execute(_ work: @escaping @Sendable () -> Void) {
        schedule(at: 0, work)
    }

    /// Asks the thread to end: it first runs everything still scheduled, due or not (the work is
    /// expected to notice its owner's shutdown and fail fast). Returns the thread to join.
    @discardableResult
    func stop() -> OwnerThread? {
        state.withLockedValue { $0.stopping = true }
        let thread = lifecycle.stop()
        if thread == nil {
            // Never started: nothing will run what is queued, so run it here.
            for work in state.withLockedValue({ state -> [@Sendable () -> Void] in
                state.finished = true
                defer { state.heap = [] }
                return state.heap.map(\.work)
            }) { work() }
        }
        wake.wake()
        return thread
    }

    private static func run(state: NIOLockedValueBox<State>, wake: WakePipe) {
        while true {
            wake.drain()
            let now = monotonicNanoseconds()
            let (due, next, stopping) = state.withLockedValue { state -> ([@Sendable () -> Void], UInt64?, Bool) in
                var due: [@Sendable () -> Void] = []
                while let first = state.heap.first, state.stopping || first.deadline <= now {
                    due.append(pop(from: &state.heap).work)
                }
                if state.stopping && state.heap.isEmpty { state.finished = true }
                return (due, state.heap.first?.deadline, state.stopping)
            }
            for work in due { work() }
            if stopping {
                // Work run above may have scheduled more; `finished` makes later calls run inline.
                let late = state.withLockedValue { state -> [@Sendable () -> Void] in
                    state.finished = true
                    defer { state.heap = [] }
                    var entries = state.heap
                    entries.sort { $0.precedes($1) }
                    return entries.map(\.work)
                }
                for work in late { work() }
                return
            }
            var wait: UInt64 = 1_000_000_000
            if let next {
                let now = monotonicNanoseconds()
                wait = min(wait, next > now ? next - now : 0)
            }
            if wait > 0 {
                var fds = [pollfd(fd: wake.readEnd, events: Int16(POLLIN), revents: 0)]
                _ = poll(&fds, 1, Int32((wait + 999_999) / 1_000_000))
            }
        }
    }

    private static func push(_ entry: Entry, into heap: inout [Entry]) {
        heap.append(entry)
        var child = heap.count - 1
        while child > 0 {
            let parent = (child - 1) / 2
            guard heap[child].precedes(heap[parent]) else { break }
            heap.swapAt(child, parent)
            child = parent
        }
    }

    private static func pop(from heap: inout [Entry]) -> Entry {
        let top = heap[0]
        let last = heap.removeLast()
        guard !heap.isEmpty else { return top }
        heap[0] = last
        var parent = 0
        while true {
            let left = 2 * parent + 1
            let right = left + 1
            var smallest = parent
            if left < heap.count, heap[left].precedes(heap[smallest]) { smallest = left }
            if right < heap.count, heap[right].precedes(heap[smallest]) { smallest = right }
            guard smallest != parent else { return top }
            heap.swapAt(parent, smallest)
            parent = smallest
        }
    }
}
