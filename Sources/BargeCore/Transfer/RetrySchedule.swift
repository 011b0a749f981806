/// When to try a failed transfer again: exponential back-off from a minimum delay, with jitter so a fleet does
/// not retry in step, never sooner than the server's `Retry-After`. Pure: the random fraction is passed in.
public struct RetrySchedule: Hashable, Sendable {
    /// The first delay.
    public var minimumDelay: TimeSpan
    /// The longest delay.
    public var maximumDelay: TimeSpan

    /// Creates a schedule; the maximum defaults to one hour (or the minimum, if larger).
    public init(minimumDelay: TimeSpan, maximumDelay: TimeSpan = .hours(1)) {
        self.minimumDelay = minimumDelay
        self.maximumDelay = max(maximumDelay, minimumDelay)
    }

    /// The delay before retry number `attempt` (1 for the first retry).
    ///
    /// - Parameters:
    ///   - attempt: 1-based retry count.
    ///   - retryAfter: the server's `Retry-After`, which is a floor.
    ///   - jitter: a random fraction in 0..<1; the delay is spread over [d, 1.5 d], so it is never below the
    ///     minimum delay.
    /// - Returns: the delay in seconds.
    public func delay(attempt: Int, retryAfter: TimeSpan? = nil, jitter: Double) -> Double {
        let exponent = min(max(attempt - 1, 0), 30)
        let base = min(
            Double(self.minimumDelay.seconds) * Double(1 << exponent),
            Double(self.maximumDelay.seconds)
        )
        let jittered = base * (1 + min(max(jitter, 0), 1) / 2)
        return max(jittered, Double(retryAfter?.seconds ?? 0))
    }
}

/// What follows a failed transfer: when to try again, or to give up. Pure: the clock and the random fraction are
/// passed in.
///
/// Like BITS's no-progress timeout, the give-up clock and the back-off count only failures without progress: a
/// transfer that moved its offset forward before it failed starts a new run (tried again after
/// ``RetryPolicy/afterProgressDelay``), so a server that drops every connection after a while still delivers the
/// whole file, while one that never sends a byte is given up after the policy's `giveUpAfter`.
public struct RetryVerdict: Hashable, Sendable {
    /// Failures in a row without progress, this one included (0 when this attempt made progress).
    public var attempts: Int
    /// When the current run of failures without progress began.
    public var firstFailureAt: Double
    /// When to try again (epoch seconds); nil: give up.
    public var retryAt: Double?

    /// Decides what follows a failure at `now`.
    ///
    /// - Parameters:
    ///   - attempts: failures in a row without progress before this one.
    ///   - firstFailureAt: when that run began (nil: there was none).
    ///   - progressed: whether the failed transfer moved the offset forward.
    ///   - permanent: whether the failure is permanent (never retried).
    ///   - retryAfter: the server's `Retry-After`, a floor for the delay.
    ///   - jitter: a random fraction in 0..<1.
    public init(
        policy: RetryPolicy,
        attempts: Int,
        firstFailureAt: Double?,
        progressed: Bool,
        permanent: Bool,
        retryAfter: TimeSpan?,
        now: Double,
        jitter: Double
    ) {
        self.attempts = progressed ? 0 : attempts + 1
        self.firstFailureAt = progressed ? now : (firstFailureAt ?? now)
        guard !permanent, now - self.firstFailureAt < Double(policy.giveUpAfter.seconds) || progressed else {
            self.retryAt = nil
            return
        }
        let delay =
            progressed
            ? max(
                Double(RetryPolicy.afterProgressDelay.seconds) * (1 + min(max(jitter, 0), 1) / 2),
                Double(retryAfter?.seconds ?? 0)
            )
            : RetrySchedule(minimumDelay: policy.minDelay).delay(
                attempt: self.attempts,
                retryAfter: retryAfter,
                jitter: jitter
            )
        self.retryAt = now + delay
    }
}

extension RetryPolicy {
    /// The wait before a failed transfer that made progress is tried again (a dropped connection on a flaky link:
    /// the next attempt resumes where this one stopped).
    public static let afterProgressDelay = TimeSpan(seconds: 1)
}
