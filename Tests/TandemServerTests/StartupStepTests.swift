import Testing
@testable import TandemServer

/// Issue 9: the gate the node's services start behind (a `ServiceGroup` starts every service at once):
/// a later step waits for the earlier one, and learns when it failed instead of waiting forever.
@Suite struct StartupStepTests {
    struct Boom: Error {}

    @Test func waitersResumeWhenTheStepOpensAndLaterWaitersPassAtOnce() async throws {
        let step = StartupStep()
        let waiter = Task { try await step.wait() }
        step.open()
        try await waiter.value
        try await step.wait()
        step.fail(Boom())  // a step finishes once: a late failure changes nothing
        try await step.wait()
    }

    @Test func aFailedStepFailsItsWaitersWithTheCause() async {
        let step = StartupStep()
        let waiter = Task { try await step.wait() }
        step.fail(Boom())
        for task in [waiter, Task { try await step.wait() }] {
            await #expect(throws: StartupStep.PreviousStepFailed.self) { try await task.value }
        }
    }
}
