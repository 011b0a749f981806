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
