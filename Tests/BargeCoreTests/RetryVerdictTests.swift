import BargeCore
import Testing

/// What follows a failed transfer: the give-up clock and the back-off count only failures without progress.
@Suite("RetryVerdict")
struct RetryVerdictTests {
    let policy = RetryPolicy(minDelay: TimeSpan(seconds: 60), giveUpAfter: .hours(1))

    func verdict(attempts: Int, first: Double?, progressed: Bool, permanent: Bool = false, now: Double) -> RetryVerdict
    {
        RetryVerdict(
            policy: self.policy,
            attempts: attempts,
            firstFailureAt: first,
            progressed: progressed,
            permanent: permanent,
            retryAfter: nil,
            now: now,
            jitter: 0
        )
    }

    @Test func failuresWithoutProgressBackOffAndGiveUpAfterTheWindow() {
        let first = self.verdict(attempts: 0, first: nil, progressed: false, now: 1000)
        #expect(first.attempts == 1 && first.firstFailureAt == 1000 && first.retryAt == 1060)
        let third = self.verdict(attempts: 2, first: 1000, progressed: false, now: 2000)
        #expect(third.attempts == 3 && third.retryAt == 2000 + 240)
        let late = self.verdict(attempts: 5, first: 1000, progressed: false, now: 1000 + 3600)
        #expect(late.retryAt == nil)
    }

    @Test func progressStartsANewRunAndRetriesSoon() {
        // Long past the window, but this attempt moved the offset: the clock starts again.
        let verdict = self.verdict(attempts: 5, first: 1000, progressed: true, now: 1000 + 7200)
        #expect(verdict.attempts == 0)
        #expect(verdict.firstFailureAt == 1000 + 7200)
        #expect(verdict.retryAt == 1000 + 7200 + Double(RetryPolicy.afterProgressDelay.seconds))
        // The next failure without progress backs off from the first step.
        let next = self.verdict(attempts: verdict.attempts, first: verdict.firstFailureAt, progressed: false, now: 9000)
        #expect(next.attempts == 1 && next.retryAt == 9060)
    }

    @Test func aPermanentFailureIsNeverRetried() {
        #expect(self.verdict(attempts: 0, first: nil, progressed: true, permanent: true, now: 10).retryAt == nil)
    }
}
